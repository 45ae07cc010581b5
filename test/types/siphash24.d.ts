// siphash24 (SipHash-2-4, WebAssembly with a JavaScript fallback) ships no type declarations; this is its API.
// The tests use it as an independent cross-check of src/proxy/postgres/siphash.ts.
declare module "siphash24" {
  /**
   * SipHash-2-4 of `data` under a 16-byte `key`, written to `out` (8 bytes; a new array when omitted) and
   * returned. `noAssert`: skip the argument length checks.
   */
  function siphash24(data: Uint8Array, key: Uint8Array, out?: Uint8Array, noAssert?: boolean): Uint8Array;
  namespace siphash24 {
    const BYTES: number;
    const KEYBYTES: number;
    const WASM_SUPPORTED: boolean;
    const WASM_LOADED: boolean;
  }
  export default siphash24;
}
