// Validates policy inputs and verdicts against policies/schemas/*.json. The engine acts only on verdicts that
// pass (anything else becomes a block, see engine.ts); the CLI checks hand-written inputs before evaluating.
import { readFileSync } from "node:fs";
import { Ajv, type ErrorObject, type ValidateFunction } from "ajv";
import type { Verdict } from "./contract.js";

const ajv = new Ajv({ allErrors: false, strict: true, allowUnionTypes: true });

function compile<T>(file: string): ValidateFunction<T> {
  const url = new URL(`../../policies/schemas/${file}`, import.meta.url);
  return ajv.compile<T>(JSON.parse(readFileSync(url, "utf8")));
}

const validateVerdict = compile<Verdict>("verdict.schema.json");
const validateInput = compile<unknown>("input.schema.json");

function describe(errors: ErrorObject[] | null | undefined): string {
  const first = errors?.[0];
  if (!first) return "does not match the schema";
  const where = first.instancePath || "(root)";
  const params = first.params as Record<string, unknown>;
  const detail =
    "allowedValues" in params
      ? ` ${JSON.stringify(params.allowedValues)}`
      : "additionalProperty" in params
        ? ` "${params.additionalProperty}"`
        : "";
  return `${where} ${first.message ?? "is invalid"}${detail}`;
}

/** Returns null when `value` is a valid verdict, else a one-line description of the first problem. */
export function verdictProblem(value: unknown): string | null {
  return validateVerdict(value) ? null : describe(validateVerdict.errors);
}

/** Returns null when `value` is a valid policy input, else a one-line description of the first problem. */
export function inputProblem(value: unknown): string | null {
  return validateInput(value) ? null : describe(validateInput.errors);
}
