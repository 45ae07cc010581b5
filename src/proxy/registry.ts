// Every protocol the gateway speaks: one line per adapter. The configuration schema (listeners.<protocol>,
// resources[] by kind) and the gateway's listeners are composed from this list; nothing else names a protocol's
// module. To add a protocol, add its folder under src/proxy/ and its line here (docs/adapters.md).
import { kubernetesAdapter } from "./kubernetes/adapter.js";
import { postgresAdapter } from "./postgres/adapter.js";
import { sshAdapter } from "./ssh/adapter.js";

export const ADAPTERS = [postgresAdapter, sshAdapter, kubernetesAdapter] as const;

export type RegisteredAdapter = (typeof ADAPTERS)[number];
