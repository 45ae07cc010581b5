// How the API reads input. fastify's defaults are lenient in ways an approval API should not be: its ajv coerces
// types everywhere ({"comment": 1} would become "1") and silently drops unknown properties ({"coment": "…"}
// would be accepted and the comment lost). Here the body is validated strictly — no coercion, unknown
// properties refused by name — while the query string and path parameters, which are strings on the wire,
// are still coerced to the schema's types. Malformed JSON is refused with the parser's own explanation.
import { Ajv, type Options as AjvOptions, type ErrorObject } from "ajv";
import type { FastifyInstance, FastifySchemaCompiler } from "fastify";
import { ApiError } from "./errors.js";
import { UUID_PATTERN } from "./schemas.js";

const UUID = new RegExp(UUID_PATTERN);
// RFC 3339 date-time, as fast-json-stringify writes it and as the OpenAPI document declares it.
const DATE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/i;

function ajv(options: AjvOptions): Ajv {
  const instance = new Ajv({
    allErrors: false,
    removeAdditional: false,
    useDefaults: true,
    // OpenAPI keywords (example, …) and fastify's own are allowed in the schemas.
    strict: false,
    // Errors carry their schema, so a refused property can be answered with the allowed ones.
    verbose: true,
    ...options,
  });
  instance.addFormat("uuid", UUID);
  instance.addFormat("date-time", DATE_TIME);
  return instance;
}

const strict = ajv({ coerceTypes: false });
const coercing = ajv({ coerceTypes: "array" });

/** Strict for bodies, coercing for the string-typed parts of a request. */
export const validatorCompiler: FastifySchemaCompiler<unknown> = ({ schema, httpPart }) =>
  (httpPart === "body" ? strict : coercing).compile(schema as object);

/**
 * One line per validation failure naming the field: "body has no property "coment" (allowed: comment)",
 * "querystring/status must be one of: pending, approved, denied, expired".
 */
export function schemaErrorFormatter(errors: ErrorObject[], dataVar: string): Error {
  const lines = errors.map((e) => {
    const where = `${dataVar}${e.instancePath}`;
    switch (e.keyword) {
      case "additionalProperties": {
        const allowed = Object.keys(
          ((e.parentSchema as { properties?: object } | undefined)?.properties ?? {}) as object,
        );
        return `${where} has no property ${JSON.stringify(e.params.additionalProperty)}${
          allowed.length > 0 ? ` (allowed: ${allowed.join(", ")})` : ""
        }`;
      }
      case "enum":
        return `${where} must be one of: ${(e.params.allowedValues as unknown[]).join(", ")}`;
      case "pattern":
        return where.startsWith("params/id")
          ? `${where} must be an approval id (a UUID)`
          : `${where} ${e.message}`;
      default:
        return `${where} ${e.message}`;
    }
  });
  return new Error(lines.join("; "));
}

/**
 * JSON bodies: parse errors name the problem; an empty body counts as no body (so `curl -X POST -H
 * 'content-type: application/json'` works for the optional comment); text/plain is not accepted (415).
 */
export function installBodyParsers(app: FastifyInstance): void {
  app.removeContentTypeParser(["application/json", "text/plain"]);
  app.addContentTypeParser("application/json", { parseAs: "string" }, (_request, body, done) => {
    const text = String(body);
    if (text.trim() === "") {
      done(null, undefined);
      return;
    }
    try {
      done(null, JSON.parse(text));
    } catch (err) {
      done(
        new ApiError(400, "invalid_json", `the body is not valid JSON: ${(err as Error).message}`),
        undefined,
      );
    }
  });
}
