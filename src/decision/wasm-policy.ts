// One compiled policy.wasm instance with its data loaded: the unit the engine swaps atomically.
import { type LoadedPolicy, loadPolicy } from "@open-policy-agent/opa-wasm";

/** opa-wasm's LoadedPolicy with the types it really returns. */
interface OpaLoadedPolicy extends LoadedPolicy {
  entrypoints: Record<string, number>;
}

export class WasmPolicyError extends Error {
  override name = "WasmPolicyError";
}

export class WasmPolicy {
  private constructor(
    private readonly loaded: OpaLoadedPolicy,
    private readonly entrypointIds: ReadonlyMap<string, number>,
  ) {}

  /** Compiles and instantiates `wasm`, loads `data`, and checks that every required entrypoint exists. */
  static async load(
    wasm: Uint8Array,
    data: unknown,
    requiredEntrypoints: readonly string[],
  ): Promise<WasmPolicy> {
    let loaded: OpaLoadedPolicy;
    try {
      const module = await WebAssembly.compile(wasm as Uint8Array<ArrayBuffer>);
      loaded = (await loadPolicy(module, { initial: 5 })) as OpaLoadedPolicy;
    } catch (err) {
      throw new WasmPolicyError(`policy.wasm cannot be loaded: ${errorText(err)}`);
    }
    try {
      loaded.setData(data as object);
    } catch (err) {
      throw new WasmPolicyError(`data cannot be loaded into the policy: ${errorText(err)}`);
    }
    const ids = new Map(Object.entries(loaded.entrypoints));
    const missing = requiredEntrypoints.filter((e) => !ids.has(e));
    if (missing.length > 0) {
      throw new WasmPolicyError(
        `policy.wasm lacks entrypoint ${missing.map((m) => `"${m}"`).join(", ")} (it has: ${[...ids.keys()].join(", ") || "none"}); build it with opa build -t wasm -e ${missing[0]}`,
      );
    }
    return new WasmPolicy(loaded, ids);
  }

  get entrypoints(): string[] {
    return [...this.entrypointIds.keys()];
  }

  has(entrypoint: string): boolean {
    return this.entrypointIds.has(entrypoint);
  }

  /**
   * Evaluates `entrypoint` with an input that is already serialized JSON (so callers control the encoding, e.g.
   * of bigint nanoseconds). Returns the result, or undefined when the entrypoint is undefined for this input.
   * Throws when evaluation fails.
   */
  evaluate(inputJson: ArrayBuffer, entrypoint: string): unknown {
    const id = this.entrypointIds.get(entrypoint);
    if (id === undefined) throw new WasmPolicyError(`entrypoint "${entrypoint}" is not in this bundle`);
    const rs: Array<{ result: unknown }> | null = this.loaded.evaluate(inputJson, id);
    if (!Array.isArray(rs) || rs.length === 0) return undefined;
    return rs[0]?.result;
  }
}

/** opa-wasm throws strings as well as Errors; normalize to a message. */
export function errorText(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
