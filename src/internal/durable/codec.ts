/**
 * How a group of rows travels through a stream entry: the rows as one JSON text, as the target's
 * schema types them (the type side: what `submit` validated and what the worker's flow validates
 * again). Rows of plain schemas (strings, finite numbers, booleans, null, literals) are JSON as they
 * are; other rows carry their Dates, bigints and byte arrays as tagged objects, revived on read.
 */
import * as Either from "effect/Either"
import type * as AST from "effect/SchemaAST"
import type * as Target from "../../Target.js"

/** The fields of one stream entry, in the order they are written. */
export const Field = {
  producer: "producer",
  seq: "seq",
  count: "count",
  rows: "rows"
} as const

/** @internal */
export interface Codec {
  readonly encode: (rows: ReadonlyArray<unknown>) => string
  readonly decode: (text: string) => Either.Either<ReadonlyArray<unknown>, string>
}

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

/** The type side of a schema's AST (a Transformation's `to`), as the rows are typed. */
const typeSide = (ast: AST.AST): AST.AST => (ast._tag === "Transformation" ? typeSide(ast.to) : ast)

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

/** The codec of a target, made once per target. */
export const codecOf = (target: Target.Any): Codec => {
  let codec = codecs.get(target)
  if (codec === undefined) {
    const schema = (target as unknown as Target.Target<unknown>).schema
    const plain = isPlain(typeSide(schema.ast))
    codec = plain
      ? { encode: (rows) => JSON.stringify(rows), decode: (text) => parseArray(text, false) }
      : { encode: (rows) => JSON.stringify(rows, replacer), decode: (text) => parseArray(text, true) }
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
