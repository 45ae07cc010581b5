// A hash router: `#/audit?identity=alice&q=delete` is the route ["audit"] with its parameters, so every view (a
// search included) is a link that can be shared, bookmarked and reloaded, and the server serves one page.
import { useEffect, useState } from "preact/hooks";

export interface Route {
  /** The path's segments, decoded: `#/approvals/0b7f…` → ["approvals", "0b7f…"]. */
  path: string[];
  params: URLSearchParams;
  /** The hash as it was, for comparisons. */
  hash: string;
}

export const DEFAULT_ROUTE = "#/approvals";

export function parseHash(hash: string): Route {
  const raw = hash.replace(/^#/, "");
  const q = raw.indexOf("?");
  const pathPart = q >= 0 ? raw.slice(0, q) : raw;
  const params = new URLSearchParams(q >= 0 ? raw.slice(q + 1) : "");
  const path = pathPart
    .split("/")
    .filter((s) => s !== "")
    .map((s) => {
      try {
        return decodeURIComponent(s);
      } catch {
        return s;
      }
    });
  return { path, params, hash };
}

/** `href(["sessions", id], {terminal: 1})` → `#/sessions/<id>?terminal=1`; empty parameters are left out. */
export function href(path: readonly string[], params?: Record<string, string | undefined | null>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params ?? {}))
    if (v !== undefined && v !== null && v !== "") q.set(k, v);
  const s = q.toString();
  return `#/${path.map(encodeURIComponent).join("/")}${s ? `?${s}` : ""}`;
}

export function navigate(hash: string, options: { replace?: boolean } = {}): void {
  if (options.replace) {
    history.replaceState(history.state, "", hash);
    window.dispatchEvent(new HashChangeEvent("hashchange"));
  } else if (location.hash !== hash) {
    location.hash = hash;
  } else {
    window.dispatchEvent(new HashChangeEvent("hashchange")); // the same route again: reload it
  }
}

/** The current route; re-renders on every hash change. */
export function useRoute(): Route {
  const [route, setRoute] = useState(() => parseHash(location.hash));
  useEffect(() => {
    const onChange = () => setRoute(parseHash(location.hash));
    window.addEventListener("hashchange", onChange);
    return () => window.removeEventListener("hashchange", onChange);
  }, []);
  return route;
}
