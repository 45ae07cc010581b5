// The pamgate web console: the shell (navigation, who is signed in, the live status region) and the routes.
//
//   #/approvals              pending requests (live), #/approvals?tab=history the decided ones
//   #/approvals/<id>         one request: what will run, who asks, why; Approve / Deny
//   #/audit?identity=…&q=…   the audit trail's decisions
//   #/sessions/<id>          a session: terminals (replay), transcript, decisions
//   #/status                 the gateway's components and policy bundle
import "asciinema-player/dist/bundle/asciinema-player.css";
import "./style.css";
import { type ComponentChildren, render } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";
import { api, type Me, messageOf } from "./api.js";
import { ApprovalDetail, ApprovalsPage } from "./approvals.js";
import { AuditPage } from "./audit.js";
import { announcement, approvals, connect, disconnect, loadPending } from "./live.js";
import { DEFAULT_ROUTE, navigate, type Route, useRoute } from "./router.js";
import { SessionPage } from "./session.js";
import { StatusPage } from "./status.js";
import { useStore } from "./store.js";
import { PageHeading, useTitle } from "./ui.js";

function View({ route, me }: { route: Route; me: Me | null }) {
  const [section, id] = route.path;
  switch (section) {
    case "approvals":
      return id ? <ApprovalDetail key={id} id={id} me={me} /> : <ApprovalsPage route={route} />;
    case "audit":
      return <AuditPage route={route} />;
    case "sessions":
      return id ? <SessionPage key={id} id={id} /> : <NotFound />;
    case "status":
      return <StatusPage />;
    case undefined:
      return null; // redirected to the default route
    default:
      return <NotFound />;
  }
}

function NotFound() {
  useTitle("Not found");
  return (
    <>
      <PageHeading>Not found</PageHeading>
      <p>
        There is no such page in the console. <a href="#/approvals">Go to the approvals</a>.
      </p>
    </>
  );
}

function SignedOut() {
  useEffect(() => {
    document.title = "Signed out — pamgate";
    document.getElementById("page-heading")?.focus();
  }, []);
  return (
    <main id="main" class="signed-out">
      <h1 id="page-heading" tabIndex={-1}>
        Signed out
      </h1>
      <p>
        You are signed out of the pamgate console. <a href="/console/login">Sign in again</a>
      </p>
    </main>
  );
}

function LiveIndicator() {
  const { connection } = useStore(approvals);
  const text = connection === "live" ? "Live" : connection === "connecting" ? "Connecting…" : "Reconnecting…";
  return (
    <span class={`conn conn-${connection}`} title="Live updates of approval requests">
      <span class="dot" aria-hidden="true" />
      {text}
    </span>
  );
}

function Announcer() {
  const { text, n } = useStore(announcement);
  // The region stays; each announcement is a new node in it (keyed by its number), so the same sentence twice is
  // read out twice, and the toast's fade starts over.
  return (
    <div role="status" aria-live="polite" aria-atomic="true" class="announcer">
      {text ? (
        <span key={n} class="toast">
          {text}
        </span>
      ) : null}
    </div>
  );
}

function App() {
  const route = useRoute();
  const [me, setMe] = useState<Me | null>(null);
  const [meError, setMeError] = useState<string | null>(null);
  const [signedOut, setSignedOut] = useState(false);
  const [signingOut, setSigningOut] = useState(false);
  const state = useStore(approvals);
  const section = route.path[0] ?? "";
  const pathKey = route.path.join("/");
  const firstPath = useRef(true);

  useEffect(() => {
    api.me().then(setMe, (err) => setMeError(messageOf(err)));
    void loadPending();
    connect();
    return disconnect;
  }, []);

  useEffect(() => {
    if (route.path.length === 0) navigate(DEFAULT_ROUTE, { replace: true });
  }, [route.path.length]);

  // After a navigation, focus the new page's heading (screen readers announce it) and start at its top.
  useEffect(() => {
    if (firstPath.current) {
      firstPath.current = false;
      return;
    }
    window.scrollTo(0, 0);
    let tries = 0;
    const focus = () => {
      const heading = document.getElementById("page-heading");
      if (heading) heading.focus({ preventScroll: true });
      else if (++tries < 20) setTimeout(focus, 50);
      else document.getElementById("main")?.focus({ preventScroll: true });
    };
    focus();
  }, [pathKey]);

  const signOut = async () => {
    setSigningOut(true);
    try {
      await api.logout();
      disconnect();
      setSignedOut(true);
    } catch (err) {
      setMeError(`Signing out failed: ${messageOf(err)}`);
    } finally {
      setSigningOut(false);
    }
  };

  if (signedOut) return <SignedOut />;

  const pending = state.pending.length;
  const link = (name: string, to: string, label: string, extra?: ComponentChildren) => (
    <li>
      <a href={to} aria-current={section === name ? "page" : undefined}>
        {label}
        {extra}
      </a>
    </li>
  );

  return (
    <>
      {/* A button, not a link to #main: the URL's hash is the route. */}
      <button type="button" class="skip-link" onClick={() => document.getElementById("main")?.focus()}>
        Skip to content
      </button>
      <header class="topbar">
        <div class="topbar-inner">
          <a class="brand" href="#/approvals" aria-label="pamgate console home">
            <span class="brand-mark" aria-hidden="true">
              ▚
            </span>
            pamgate
          </a>
          <nav aria-label="Main">
            <ul>
              {link(
                "approvals",
                "#/approvals",
                "Approvals",
                state.pendingLoaded && pending > 0 ? (
                  <span class="count">
                    <span class="visually-hidden">, </span>
                    {pending}
                    <span class="visually-hidden"> pending</span>
                  </span>
                ) : null,
              )}
              {link("audit", "#/audit", "Audit")}
              {link("status", "#/status", "Status")}
            </ul>
          </nav>
          <span class="spacer" />
          <LiveIndicator />
          <div class="user">
            {me ? (
              <span
                class="who"
                title={[me.identity.email, me.identity.groups.join(", ")].filter(Boolean).join(" · ")}
              >
                {me.identity.sub}
                {me.identity.actors.length > 1 ? (
                  <span class="muted"> via {me.identity.actors.map((a) => a.sub).join(" → ")}</span>
                ) : null}
              </span>
            ) : null}
            <button type="button" class="button-small" onClick={() => void signOut()} disabled={signingOut}>
              Sign out
            </button>
          </div>
        </div>
      </header>
      <Announcer />
      <main id="main" tabIndex={-1}>
        {meError ? (
          <div class="notice notice-bad" role="alert">
            <p>{meError}</p>
          </div>
        ) : null}
        <View route={route} me={me} />
      </main>
    </>
  );
}

const root = document.getElementById("app");
if (root) {
  root.textContent = "";
  render(<App />, root);
}
