// The gateway configuration: the example file is valid, and every kind of mistake is reported with the file,
// the line and the field — never the secret.
import { readFileSync } from "node:fs";
import t from "tap";
import { ConfigError, loadConfig, parseConfig, resolveCredential } from "../../src/config/load.js";
import { packagePath } from "../../src/util/tools.js";

const base = `listeners:
  postgres:
    port: 6432
policy:
  bundle: b.tar.gz
identity:
  issuers:
    - issuer: https://idp.example.com
      audience: pamgate
resources:
  - name: orders-db
    kind: postgres
    upstream: { host: 127.0.0.1, port: 5432, database: app, user: pamgate }
    credentials: { password_env: PAMGATE_TEST_SECRET }
`;

function problems(text: string): string[] {
  try {
    parseConfig(text, "gw.yaml");
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
}

t.test("the example configuration is valid and paths resolve against its folder", async (t) => {
  const config = await loadConfig(packagePath("examples", "gateway.yaml"));
  t.equal(config.resources[0]?.name, "orders-db");
  t.equal(config.policy.bundle, packagePath("build", "bundle.tar.gz"));
  t.same(problems(base), []);
});

t.test("mistakes name file, line and field", async (t) => {
  t.same(problems(base.replace("port: 6432", "port: abc")), [
    "gw.yaml:3: listeners.postgres.port: must be integer",
  ]);
  t.same(problems(base.replace("user: pamgate }", "user: pamgate, colour: blue }")), [
    "gw.yaml:13: resources[0].upstream.colour: unknown field",
  ]);
  t.same(problems(base.replace("    kind: postgres\n", "    kind: mysql\n")), [
    'gw.yaml:12: resources[0].kind: must be one of ["postgres","ssh","kubernetes"]',
  ]);
  t.same(problems(base.replace("    kind: postgres\n", "")), [
    'gw.yaml:11: resources[0]: missing required field "kind"',
  ]);
  t.same(
    problems(base.replace("database: app, ", "")),
    ['gw.yaml:13: resources[0].upstream: missing required field "database"'],
    "a resource is checked against its own kind's upstream schema only",
  );
  t.same(problems(`${base}store: { type: embedded }\n`), ['gw.yaml:15: store: missing required field "dir"']);
  t.same(problems(`${base}store: { type: redis }\n`), [
    'gw.yaml:15: store.type: must be one of ["embedded","postgres"]',
  ]);
  t.same(problems(base.replace("      audience: pamgate\n", "")), [
    'gw.yaml:8: identity.issuers[0]: missing required field "audience"',
  ]);
  t.match(
    problems(
      `${base}  - name: orders-db\n    kind: postgres\n    upstream: { host: h, port: 1, database: d, user: u }\n    credentials: { password: x }\n`,
    ),
    [/gw\.yaml:15: resources\[1\]\.name: "orders-db" is used twice/],
  );
  t.match(problems(base.replace("  bundle: b.tar.gz", "  bundle: b.tar.gz\n  url: http://x")), [
    /policy: set exactly one of bundle, url or policies/,
  ]);
  t.match(problems("listeners: [\n"), [/gw\.yaml:\d+: YAML syntax/]);
  t.match(problems("listeners: {}\n"), [/missing required field "policy"/]);
});

t.test("credentials resolve from env or file and errors never show the secret", async (t) => {
  process.env.PAMGATE_TEST_SECRET = "s3cret-env";
  t.equal(await resolveCredential({ password_env: "PAMGATE_TEST_SECRET" }, "db"), "s3cret-env");
  delete process.env.PAMGATE_TEST_SECRET;
  await t.rejects(
    resolveCredential({ password_env: "PAMGATE_TEST_SECRET" }, "db"),
    /PAMGATE_TEST_SECRET is not set/,
  );
  const dir = t.testdir({ pw: "file-secret\nignored\n" });
  t.equal(await resolveCredential({ password_file: `${dir}/pw` }, "db"), "file-secret");
  const err = await resolveCredential({ password_file: `${dir}/absent` }, "db").catch((e: Error) => e);
  t.match((err as Error).message, /cannot read .*absent: ENOENT/);
  t.equal(await resolveCredential({ password: "inline" }, "db"), "inline");
  t.notMatch(
    readFileSync(packagePath("examples", "gateway.yaml"), "utf8"),
    /password:\s*\S/,
    "the example holds no inline password",
  );
});
