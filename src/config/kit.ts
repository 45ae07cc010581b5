// Small schema builders shared by the gateway's and the adapters' configuration schemas (TypeBox). This file
// imports nothing of pamgate's, so any schema module can use it without an import cycle.
import { type TUnsafe, Type } from "@sinclair/typebox";

/** A non-empty string. */
export const NonEmpty = Type.String({ minLength: 1 });

/** A TCP port; 0 lets the OS choose (tests). */
export const Port = Type.Integer({ minimum: 0, maximum: 65535 });

/**
 * A string from a fixed set, as a plain JSON Schema `enum` (so a wrong value is reported as `must be one of
 * [...]`, not as one failed `const` per allowed value).
 */
export function StringEnum<const T extends readonly string[]>(values: T): TUnsafe<T[number]> {
  return Type.Unsafe<T[number]>({ type: "string", enum: [...values] });
}

/** A map of strings to strings (labels, headers). */
export const StringMap = Type.Record(Type.String(), Type.String());
