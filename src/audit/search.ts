// The data layer of the web console's audit search and session replay (the HTTP routes are src/api's):
//
//   const search = new SpoolDecisionSearch(await findSpoolDirs(config.audit.dir));   // or:
//   const search = new PostgresDecisionSearch(pool, { table: "audit.pamgate" });
//   const page = await search.searchDecisions({ identity: "alice", action: "block", limit: 50 });
//   const next = await search.searchDecisions({ identity: "alice", action: "block", limit: 50, before: page.next_cursor });
//
//   const view = await loadSessionView(() => spoolRecords(dir), sessionId);       // transcript + terminals
//   const cast = await loadCast(() => spoolRecords(dir), `${sessionId}/1`);       // asciicast v2 text
//
// search-row.ts: a decision event as a row, and the filters; search-query.ts: the query, page and cursor;
// search-spool.ts / search-postgres.ts: the two backends; session-view.ts: sessions and terminals.

export { PostgresDecisionSearch, type PostgresSearchOptions } from "./search-postgres.js";
export {
  checkQuery,
  type DecisionPage,
  type DecisionQuery,
  type DecisionSearch,
  InvalidSearchError,
  MAX_LIMIT,
} from "./search-query.js";
export {
  type BodyFilters,
  commandOf,
  type DecisionRow,
  decisionRow,
  type RecordPlace,
} from "./search-row.js";
export {
  DEFAULT_MAX_SCAN,
  findSpoolDirs,
  SpoolDecisionSearch,
  type SpoolSearchOptions,
} from "./search-spool.js";
export {
  loadCast,
  loadSessionView,
  postgresSessionRecords,
  type SessionView,
  type TerminalSummary,
} from "./session-view.js";
