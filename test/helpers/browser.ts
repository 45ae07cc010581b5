// Debian's Chromium driven by playwright-core, for the web console's tests. playwright's own browser download
// needs the internet, so scripts/bootstrap installs the distribution's /usr/bin/chromium instead. The flags keep
// it from reaching for Google's services, which this machine's closed network refuses (many at a time).
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core";
import { packagePath } from "../../src/util/tools.js";

export const CHROMIUM = process.env.PAMGATE_CHROMIUM ?? "/usr/bin/chromium";

/** Where screenshots go: kept after the run as test artifacts (gitignored). */
export const ARTIFACTS = packagePath("test-artifacts", "console");

interface Teardown {
  teardown(fn: () => unknown): void;
}

export async function launchBrowser(t: Teardown): Promise<Browser> {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--no-sandbox", // root in CI containers
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  t.teardown(() => browser.close());
  return browser;
}

/** A fresh browser profile signed in to the console at `base` as `user` of the development issuer. */
export async function signedIn(
  browser: Browser,
  base: string,
  user: string,
  route = "#/approvals",
): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 860 } });
  const page = await context.newPage();
  await page.goto(`${base}/console/login?return=${encodeURIComponent(route)}`);
  await page.getByLabel("User").selectOption(user);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL(`${base}/console/${route}`);
  return { context, page };
}

/** Saves a full-page screenshot as test-artifacts/console/<name>.png; returns its path. */
export async function screenshot(page: Page, name: string): Promise<string> {
  mkdirSync(ARTIFACTS, { recursive: true });
  const path = join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  return path;
}
