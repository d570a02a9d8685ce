/**
 * How a group of rows travels through a stream entry: the rows as one JSON text of their ENCODED
 * side. A producer's rows are type-side values (what `submit` validated); a schema with
 * transformations (`Schema.DateTimeUtc`, `Schema.OptionFromNullOr`, `Schema.BigDecimal`, …) encodes
 * each row first (`ParseResult.encodeUnknownEither`), and the worker decodes each one again
 * (`ParseResult.decodeUnknownEither`) so that its flow gets type-side rows. A schema without
 * transformations skips both steps (its flow validates the rows). Rows whose encoded side is plain
 * (strings, finite numbers, booleans, null, literals) are JSON as they are; others carry their
 * Dates, bigints and byte arrays as tagged objects, revived on read.
 */
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import * as AST from "effect/SchemaAST"
import type * as Target from "../../Target.js"

/** The fields of one stream entry, in the order they are written. */
export const Field = {
  producer: "producer",
  seq: "seq",
  count: "count",
  rows: "rows"
} as const

/** Why an entry's rows could not be decoded: not JSON (`undecodable`), or a row its schema refuses. */
export interface DecodeProblem {
  readonly reason: "undecodable" | "invalid_row"
  readonly detail: string
}

/** @internal */
export interface Codec {
  /** Type-side rows into the entry's text; throws `EncodeError` when the schema cannot encode a row. */
  readonly encode: (rows: ReadonlyArray<unknown>) => string
  /** An entry's text into type-side rows. */
  readonly decode: (text: string) => Either.Either<ReadonlyArray<unknown>, DecodeProblem>
}

/** A row its schema could not encode; the message names the paths and kinds of issues, never values. */
export class EncodeError extends Error {
  override readonly name = "EncodeError"
}

/** Whether the schema changes values between its type and encoded sides (conservative). */
const transforms = (ast: AST.AST): boolean => {
  switch (ast._tag) {
    case "Transformation":
    case "Suspend":
      return true
    case "Refinement":
      return transforms(ast.from)
    case "Union":
      return ast.types.some(transforms)
    case "TypeLiteral":
      return (
        ast.propertySignatures.some((p) => transforms(p.type)) ||
        ast.indexSignatures.some((i) => transforms(i.type))
      )
    case "TupleType":
      return ast.elements.some((e) => transforms(e.type)) || ast.rest.some((r) => transforms(r.type))
    case "Declaration":
      return ast.typeParameters.some(transforms)
    default:
      return false
  }
}

/** A parse issue as its paths and kinds (`at: Type; o: Transformation`), without the values. */
const describeIssue = (issue: ParseResult.ParseIssue): string =>
  ParseResult.ArrayFormatter.formatIssueSync(issue)
    .map((i) => `${i.path.length === 0 ? "(row)" : i.path.map(String).join(".")}: ${i._tag}`)
    .join("; ")

const plainProperty = (property: AST.PropertySignature): boolean => {
  const type = property.type
  if (property.isOptional && type._tag === "Union") {
    return type.types.every((t) => t._tag === "UndefinedKeyword" || isPlain(t))
  }
  return isPlain(type)
}

/** Whether values of this type survive JSON.stringify / JSON.parse unchanged. */
const isPlain = (ast: AST.AST): boolean => {
  switch (ast._tag) {
    case "StringKeyword":
    case "NumberKeyword":
    case "BooleanKeyword":
      return true
    case "Literal":
      return typeof ast.literal !== "bigint"
    case "Union":
      return ast.types.every(isPlain)
    case "Refinement":
      return isPlain(ast.from)
    case "Suspend":
      return false
    case "TypeLiteral":
      return ast.indexSignatures.length === 0 && ast.propertySignatures.every(plainProperty)
    default:
      return false
  }
}

const DATE = "\u0000date"
const BIGINT = "\u0000bigint"
const BYTES = "\u0000bytes"

function replacer(this: Record<string, unknown>, key: string, value: unknown): unknown {
  const raw = this[key]
  if (raw instanceof Date) return { [DATE]: Number.isNaN(raw.getTime()) ? null : raw.toISOString() }
  if (typeof raw === "bigint") return { [BIGINT]: raw.toString() }
  if (raw instanceof Uint8Array) return { [BYTES]: Buffer.from(raw).toString("base64") }
  return value
}

const reviver = (_key: string, value: unknown): unknown => {
  if (typeof value !== "object" || value === null || Array.isArray(value)) return value
  const tagged = value as Record<string, unknown>
  if (DATE in tagged) return new Date(tagged[DATE] === null ? Number.NaN : String(tagged[DATE]))
  if (BIGINT in tagged) return BigInt(String(tagged[BIGINT]))
  if (BYTES in tagged) return new Uint8Array(Buffer.from(String(tagged[BYTES]), "base64"))
  return value
}

const parseArray = (text: string, revive: boolean): Either.Either<ReadonlyArray<unknown>, string> => {
  try {
    const value: unknown = revive ? JSON.parse(text, reviver) : JSON.parse(text)
    return Array.isArray(value) ? Either.right(value) : Either.left("the rows field is not a JSON array")
  } catch (cause) {
    return Either.left(
      `the rows field is not JSON: ${cause instanceof Error ? cause.message : String(cause)}`
    )
  }
}

const codecs = new WeakMap<object, Codec>()

const undecodable = (detail: string): DecodeProblem => ({ reason: "undecodable", detail })

/** The codec of a target, made once per target. */
export const codecOf = (target: Target.Any): Codec => {
  let codec = codecs.get(target)
  if (codec === undefined) {
    const schema = (target as unknown as Target.Target<unknown>).schema
    const plain = isPlain(AST.encodedAST(schema.ast))
    const stringify = plain
      ? (rows: ReadonlyArray<unknown>) => JSON.stringify(rows)
      : (rows: ReadonlyArray<unknown>) => JSON.stringify(rows, replacer)
    const parse = (text: string) => Either.mapLeft(parseArray(text, !plain), undecodable)
    if (!transforms(schema.ast)) {
      codec = { encode: stringify, decode: parse }
    } else {
      const encodeRow = ParseResult.encodeUnknownEither(schema)
      const decodeRow = ParseResult.decodeUnknownEither(schema)
      codec = {
        encode: (rows) => {
          const encoded = new Array<unknown>(rows.length)
          for (let i = 0; i < rows.length; i++) {
            const result = encodeRow(rows[i])
            if (Either.isLeft(result)) {
              throw new EncodeError(
                `row ${i} of target "${target.name}" could not be encoded by its schema: ${describeIssue(result.left)}`
              )
            }
            encoded[i] = result.right
          }
          return stringify(encoded)
        },
        decode: (text) =>
          Either.flatMap(parse(text), (encoded) => {
            const rows = new Array<unknown>(encoded.length)
            for (let i = 0; i < encoded.length; i++) {
              const result = decodeRow(encoded[i])
              if (Either.isLeft(result)) {
                return Either.left<DecodeProblem>({
                  reason: "invalid_row",
                  detail: `row ${i} could not be decoded by the schema of target "${target.name}": ${describeIssue(result.left)}`
                })
              }
              rows[i] = result.right
            }
            return Either.right(rows)
          })
      }
    }
    codecs.set(target, codec)
  }
  return codec
}

/** An entry's fields (`[name, value, name, value, …]` as Redis returns them) by name. */
export const fieldsOf = (flat: ReadonlyArray<unknown>): Record<string, string> => {
  const out: Record<string, string> = {}
  for (let i = 0; i + 1 < flat.length; i += 2) out[String(flat[i])] = String(flat[i + 1])
  return out
}
