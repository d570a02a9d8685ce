/**
 * What a table knows beyond its public shape: how to read its columns from the schema, how values of
 * each column are turned into driver values, the dedupe key and the statement templates it has built.
 */
import * as Either from "effect/Either"
import * as ParseResult from "effect/ParseResult"
import type * as Schema from "effect/Schema"
import * as AST from "effect/SchemaAST"

/** @internal The SQL dialects the executor writes. */
export type Dialect = "pg" | "mysql" | "sqlite"

/**
 * How a column's values reach a driver. `plain` (strings, numbers, null) goes as is everywhere; the
 * other kinds need a per-dialect conversion (booleans for SQLite, bytes and bigints for PostgreSQL's
 * JSON form…). `isoDate` is a `Date` written as its ISO string (`Schema.Date`): MariaDB/MySQL reject
 * that text in a DATETIME column, so it goes to them as a `Date`. `other` is anything the AST does
 * not tell us: converted by looking at the value.
 *
 * @internal
 */
export type ColumnKind = "plain" | "boolean" | "bigint" | "isoDate" | "other"

/** @internal */
export interface Internals {
  readonly kinds: ReadonlyArray<ColumnKind>
  /** Whether every column is `plain`: the hot path then passes values untouched. */
  readonly allPlain: boolean
  /** Row type → encoded form, when the schema has transformations; `undefined` otherwise. */
  readonly encode: ((row: unknown) => Either.Either<Record<string, unknown>, string>) | undefined
  /** The dedupe/ordering key: `undefined` when the table has no key or a key column is null. */
  readonly keyOf: (row: unknown) => unknown
  /** Statement templates, per dialect and form; filled on first use. */
  readonly templates: Map<string, unknown>
}

const registry = new WeakMap<object, Internals>()

/** @internal */
export const register = (table: object, internals: Internals): void => {
  registry.set(table, internals)
}

/** @internal */
export const internals = (table: object): Internals => {
  const found = registry.get(table)
  if (found === undefined) throw new Error("effect-batchflow: not a Table made by Table.make")
  return found
}

/** @internal */
export const hasInternals = (table: object): boolean => registry.has(table)

/** The property signatures of a struct schema (looking through refinements), or `undefined`. */
export const structFields = (ast: AST.AST): ReadonlyArray<AST.PropertySignature> | undefined => {
  let current = ast
  while (true) {
    if (AST.isRefinement(current)) current = current.from
    else if (AST.isTransformation(current)) current = current.to
    else break
  }
  if (!AST.isTypeLiteral(current) || current.indexSignatures.length > 0) return undefined
  return current.propertySignatures
}

const kindOf = (ast: AST.AST): ColumnKind => {
  switch (ast._tag) {
    case "StringKeyword":
    case "NumberKeyword":
    case "UndefinedKeyword":
    case "Enums":
    case "TemplateLiteral":
      return "plain"
    case "Literal":
      return ast.literal === null || typeof ast.literal === "string" || typeof ast.literal === "number"
        ? "plain"
        : typeof ast.literal === "boolean"
          ? "boolean"
          : "bigint"
    case "BooleanKeyword":
      return "boolean"
    case "BigIntKeyword":
      return "bigint"
    case "Refinement":
      return kindOf(ast.from)
    case "Union": {
      const kinds = new Set(ast.types.map(kindOf))
      if (kinds.size === 1) return kinds.values().next().value!
      return "other"
    }
    default:
      return "other"
  }
}

/** A `Date` on the type side (`DateFromSelf`, possibly refined, as in `Schema.Date`). */
const isDate = (ast: AST.AST): boolean => {
  let current = ast
  while (AST.isRefinement(current)) current = current.from
  return (
    AST.isDeclaration(current) &&
    AST.getIdentifierAnnotation(current).pipe((id) => id._tag === "Some" && id.value === "DateFromSelf")
  )
}

const containsTransformation = (ast: AST.AST): boolean => {
  switch (ast._tag) {
    case "Transformation":
      return true
    case "Refinement":
      return containsTransformation(ast.from)
    case "Union":
      return ast.types.some(containsTransformation)
    case "TypeLiteral":
      return ast.propertySignatures.some((p) => containsTransformation(p.type))
    case "TupleType":
      return (
        ast.elements.some((e) => containsTransformation(e.type)) ||
        ast.rest.some((r) => containsTransformation(r.type))
      )
    case "Suspend":
      return true
    default:
      return false
  }
}

/**
 * Column kinds, read from the encoded side of the schema (what is written), and the encoder when
 * the schema transforms values (e.g. `Schema.Date` is written as its ISO string).
 *
 * @internal
 */
export const describeColumns = (
  schema: Schema.Schema.AnyNoContext,
  columns: ReadonlyArray<string>
): Pick<Internals, "kinds" | "allPlain" | "encode"> => {
  const transforms = containsTransformation(schema.ast)
  const encodedFields = structFields(AST.encodedAST(schema.ast)) ?? []
  const typeFields = structFields(AST.typeAST(schema.ast)) ?? []
  const kinds = columns.map((column): ColumnKind => {
    const field = encodedFields.find((p) => p.name === column)
    if (field === undefined) return "other"
    const kind = kindOf(field.type)
    const typeSide = typeFields.find((p) => p.name === column)
    return kind === "plain" && typeSide !== undefined && isDate(typeSide.type) ? "isoDate" : kind
  })
  let encode: Internals["encode"]
  if (transforms) {
    const run = ParseResult.encodeUnknownEither(schema as Schema.Schema<unknown, Record<string, unknown>>)
    encode = (row) => Either.mapLeft(run(row), (error) => ParseResult.TreeFormatter.formatIssueSync(error))
  }
  return { kinds, allPlain: kinds.every((k) => k === "plain"), encode }
}

const keyPart = (value: unknown): string => {
  switch (typeof value) {
    case "string":
      return `s${value.length}:${value}`
    case "object":
      if (value instanceof Date) return `d:${value.getTime()};`
      if (value instanceof Uint8Array) return `b:${Buffer.from(value).toString("hex")};`
      return `o:${JSON.stringify(value)};`
    default:
      return `${typeof value}:${String(value)};`
  }
}

/**
 * The key of a row: one plain column is used as is (fast, and a Map compares it by value); other
 * keys become one string that keeps types apart and compares dates and bytes by value. A key with a
 * null (or missing) part is `undefined`: such rows are never merged and never ordered.
 *
 * @internal
 */
export const keyFunction = (
  key: ReadonlyArray<string>,
  plain: ReadonlyArray<boolean>
): ((row: unknown) => unknown) => {
  if (key.length === 0) return () => undefined
  if (key.length === 1 && plain[0] === true) {
    const field = key[0]!
    return (row) => {
      const value = (row as Record<string, unknown>)[field]
      return value === null ? undefined : value
    }
  }
  return (row) => {
    let out = ""
    for (const field of key) {
      const value = (row as Record<string, unknown>)[field]
      if (value === null || value === undefined) return undefined
      out += keyPart(value)
    }
    return out
  }
}
