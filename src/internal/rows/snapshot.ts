/**
 * Rows are copied at submit, after validation: what the executor writes is what `submit` checked.
 * Kept by reference, a row that the producer changes afterwards (an object reused for every row,
 * a field set to NaN or to another key) would be written unvalidated, or several times with the
 * last value.
 *
 * The copy is as deep as rows are: arrays, plain objects, `Date`s and typed arrays are copied;
 * instances of other classes (a `BigDecimal`, a `Redacted`) are kept as they are: they are immutable
 * by design, and copying them would lose their prototype. Symbol-keyed properties are not row data
 * (validation ignores them too) and are dropped.
 *
 * Per row this is on the submit path, so a struct schema gets a copier compiled for its fields: one
 * object literal, primitive fields read straight across, only the other fields copied deeply (a
 * generic key loop costs ≈ 0.3 µs per 5-field row here; see docs/development/architecture.md).
 */
import * as AST from "effect/SchemaAST"

/** @internal */
export type Copier = <A>(row: A) => A

/** A deep copy of any row value (see the module comment). @internal */
export const snapshot: Copier = <A>(row: A): A => copy(row) as A

const copy = (value: unknown): unknown =>
  typeof value === "object" && value !== null ? copyObject(value) : value

const copyObject = (value: object): object => {
  if (Array.isArray(value)) {
    const out = new Array(value.length)
    for (let i = 0; i < value.length; i++) out[i] = copy(value[i])
    return out
  }
  const proto = Object.getPrototypeOf(value)
  if (proto === Object.prototype || proto === null) {
    const out: Record<string, unknown> = {}
    const keys = Object.keys(value)
    for (let i = 0; i < keys.length; i++) {
      const key = keys[i]!
      out[key] = copy((value as Record<string, unknown>)[key])
    }
    return out
  }
  if (value instanceof Date) return new Date(value.getTime())
  if (ArrayBuffer.isView(value) && !(value instanceof DataView)) {
    return (value as unknown as { slice: () => object }).slice()
  }
  return value
}

/** Whether every value of this type is a primitive (so it can be read across without copying). */
const isPrimitive = (ast: AST.AST): boolean => {
  switch (ast._tag) {
    case "StringKeyword":
    case "NumberKeyword":
    case "BooleanKeyword":
    case "BigIntKeyword":
    case "UndefinedKeyword":
    case "Literal":
    case "Enums":
    case "TemplateLiteral":
      return true
    case "Refinement":
      return isPrimitive(ast.from)
    case "Union":
      return ast.types.every(isPrimitive)
    default:
      return false
  }
}

/**
 * The copier for rows of `schema` (its type side, which validation checked): compiled for a struct
 * of named fields, the generic deep copy otherwise. Optional fields are copied only when present,
 * so a missing field stays missing.
 *
 * @internal
 */
export const makeCopier = (schema: { readonly ast: AST.AST }): Copier => {
  const ast = AST.typeAST(schema.ast)
  if (ast._tag !== "TypeLiteral" || ast.indexSignatures.length > 0) return snapshot
  const required: Array<string> = []
  const optional: Array<string> = []
  for (const ps of ast.propertySignatures) {
    if (typeof ps.name !== "string") return snapshot
    const key = JSON.stringify(ps.name)
    const read = isPrimitive(ps.type) ? `r[${key}]` : `c(r[${key}])`
    if (ps.isOptional) optional.push(`if (${key} in r) o[${key}] = ${read};`)
    else required.push(`${key}: ${read}`)
  }
  const body = `return function (r) { var o = { ${required.join(", ")} }; ${optional.join(" ")} return o; }`
  return new Function("c", body)(copy) as Copier
}
