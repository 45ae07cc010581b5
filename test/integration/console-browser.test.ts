// The web console in a real browser (Debian's Chromium, driven by playwright-core) against a whole gateway: real
// PostgreSQL and psql, real sshd and ssh, the development issuer's browser sign-in. What a security engineer does:
// sign in, see a held statement arrive while psql waits and approve it, search the audit trail, open the session
// and replay an SSH exec with its command index. Screenshots go to test-artifacts/console/.
import t from "tap";
import { launchBrowser, screenshot, signedIn } from "../helpers/browser.js";
import { startSshTestGateway } from "../helpers/ssh-gateway.js";

const g = await startSshTestGateway((base) => ({
  listeners: { ...base.listeners, api: { host: "127.0.0.1", port: 0 } },
  // bob (dba, sre) approves DDL and, as an admin, reads the audit trail
  approvals: { wait_timeout_s: 120, admin_groups: ["sre"] },
}));
t.teardown(() => g.stop());
const base = `http://127.0.0.1:${g.gw.api?.port}`;
const browser = await launchBrowser(t);

t.test("sign in, and approve a held statement while psql waits", async (t) => {
  const { page } = await signedIn(browser, base, "bob");
  await page.getByRole("link", { name: "Approvals" }).waitFor();
  const pendingList = page.getByRole("list", { name: "Pending approvals" });
  await pendingList.waitFor();
  t.equal(await pendingList.getByRole("listitem").count(), 0, "nothing waits yet");

  const ddl = "ALTER TABLE orders ADD COLUMN IF NOT EXISTS console_note text";
  const alice = await g.tokenFor("alice");
  const psql = g.psql(alice, ddl);

  // No reload: the request arrives over the event stream.
  const item = pendingList.getByRole("listitem").filter({ hasText: "orders-db" });
  await item.waitFor({ timeout: 30_000 });
  t.match(await item.textContent(), /alice/, "the list names who asked");
  t.match(await page.getByRole("status").first().textContent(), /alice|orders-db/, "and announces it");
  await screenshot(page, "approvals-pending");

  await item.getByRole("link").first().click();
  const command = page.getByLabel("Command");
  await command.waitFor();
  t.equal((await command.textContent())?.trim(), ddl, "the approver reads exactly what will run");
  t.match(await page.textContent("main"), /pg\.ddl_needs_approval/, "and the policy's reason");
  await screenshot(page, "approval-detail");

  await page.getByLabel("Comment").fill("reviewed in the console");
  await page.getByRole("button", { name: "Approve" }).click();
  const done = await psql;
  t.equal(done.code, 0, `psql finished once approved: ${done.stderr}`);
  t.match(done.stdout + done.stderr, /ALTER TABLE/);
  const direct = await g.direct();
  t.teardown(() => direct.end());
  const col = await direct.query(
    "SELECT 1 FROM information_schema.columns WHERE table_name = 'orders' AND column_name = 'console_note'",
  );
  t.equal(col.rowCount, 1, "the approved statement ran");
  await page.getByText("approved", { exact: false }).first().waitFor();
  t.match(await page.textContent("main"), /reviewed in the console/, "the vote and its comment are shown");
  await screenshot(page, "approval-approved");
});

t.test("a requester cannot approve their own request from the console", async (t) => {
  const { page } = await signedIn(browser, base, "bob");
  const bob = await g.tokenFor("bob");
  const held = g.psql(bob, "ALTER TABLE orders ADD COLUMN IF NOT EXISTS console_self text");
  const item = page
    .getByRole("list", { name: "Pending approvals" })
    .getByRole("listitem")
    .filter({ hasText: "bob" });
  await item.waitFor({ timeout: 30_000 });
  await item.getByRole("link").first().click();
  await page.getByLabel("Command").waitFor();
  const approve = page.getByRole("button", { name: "Approve" });
  if (await approve.isEnabled()) {
    await approve.click();
    await page
      .getByText(/cannot vote|self/i)
      .first()
      .waitFor();
  }
  t.pass("approving one's own request is not possible");
  const [pending] = await g.gw.approvals.list({ status: "pending" });
  t.equal(pending?.requester.sub, "bob", "the request is still pending");
  // carol denies it from her own console; bob's psql gets the denial
  const carol = await signedIn(browser, base, "carol", `#/approvals/${pending?.id}`);
  await carol.page.getByLabel("Command").waitFor();
  await carol.page.getByLabel("Comment").fill("not during the freeze");
  await carol.page.getByRole("button", { name: "Deny" }).click();
  const r = await held;
  t.not(r.code, 0);
  t.match(r.stderr, /denied/);
});

t.test("search the audit trail and open a PostgreSQL session", async (t) => {
  const { page } = await signedIn(browser, base, "bob", "#/audit");
  await page.getByLabel("Identity").fill("alice");
  await page.getByLabel("Command contains").fill("console_note");
  await page.getByRole("button", { name: "Search" }).click();
  const table = page.getByRole("table", { name: "Decisions" });
  const row = table.getByRole("row").filter({ hasText: "ALTER TABLE" });
  await row.first().waitFor();
  t.match(page.url(), /identity=alice/, "the search is in the URL, so it can be shared");
  t.match(await row.first().textContent(), /orders-db/);
  await screenshot(page, "audit-search");

  await row
    .first()
    .getByRole("link", { name: /session/i })
    .first()
    .click();
  const transcript = page.getByRole("region", { name: "Transcript" });
  await transcript.waitFor();
  await transcript.getByText("console_note").first().waitFor();
  t.pass("the session's transcript shows the statement");
  await screenshot(page, "session-postgres");
});

t.test("replay an SSH exec with its command index", async (t) => {
  const alice = await g.tokenFor("alice");
  const r = await g.ssh(alice, ["echo replay-me; uname -s"]);
  t.equal(r.code, 0, r.stderr);
  const { page } = await signedIn(browser, base, "bob", "#/audit?protocol=ssh&q=replay-me");
  const row = page
    .getByRole("table", { name: "Decisions" })
    .getByRole("row")
    .filter({ hasText: "replay-me" });
  await row.first().waitFor();
  await row
    .first()
    .getByRole("link", { name: /session/i })
    .first()
    .click();
  const index = page.getByRole("list", { name: "Command index" });
  await index.waitFor();
  const entry = index.getByRole("button", { name: /replay-me/ });
  await entry.first().waitFor();
  await page.locator(".ap-player").first().waitFor();
  await entry.first().click();
  // The player renders the terminal's text once it has played or been seeked to the output.
  await page.locator(".ap-player").getByText("replay-me").first().waitFor({ timeout: 15_000 });
  t.pass("the recording plays in the page");
  const cast = page.getByRole("link", { name: /export.*cast|\.cast/i }).first();
  t.match(await cast.getAttribute("href"), /\/v1\/sessions\/.+\/cast\?terminal=/, "and can be exported");
  await screenshot(page, "session-ssh-replay");
});

t.test("the status page shows the active bundle", async (t) => {
  const { page } = await signedIn(browser, base, "bob", "#/status");
  await page.getByText("test", { exact: true }).first().waitFor();
  t.pass("the bundle revision is shown");
  await screenshot(page, "status");
});
