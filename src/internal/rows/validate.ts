/**
 * Row validation at submit.
 *
 * `Schema` is the ground truth, but running it costs ≈ 0.23 µs per row, almost the whole per-row
 * budget of the engine. So each target compiles a fast checker from its schema's AST: plain
 * `typeof` tests for primitive fields, the schema's own filter functions for refinements, and
 * `Schema.is` for any field shape it does not know. The fast checker only ever answers "valid";
 * anything it cannot accept at once goes to the slow path, which asks `Schema` for the verdict and
 * builds the error. So both paths give the same verdict by construction (a property test checks it).
 *
 * The error's `detail` says what was expected and the type of what was given, never the value: it
 * ends up in messages and logs. The offending value is remembered beside the error, so the engine
 * can show it when the flow's `logRowValues` asks for it (`withValue`).
 */
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import * as AST from "effect/SchemaAST"
import { InvalidRow, type InvalidRowProblem } from "../../BatchFlowError.js"
import { formatValue, type Redaction, redacted } from "./redact.js"

/** @internal */
export type RowValidator = (row: unknown) => InvalidRow | undefined

type Check = (value: unknown) => boolean

const parseOptions: AST.ParseOptions = {}

/**
 * Values no sink stores as given, whatever the schema says, rejected in every field: non-finite
 * numbers, invalid dates, strings with a lone UTF-16 surrogate (see `badValueField`). `true` when the
 * value is none of them.
 */
const storable = (v: unknown): boolean =>
  typeof v === "number"
    ? Number.isFinite(v)
    : typeof v === "string"
      ? isWellFormed(v)
      : !(v instanceof Date) || !Number.isNaN(v.getTime())

/** `String.prototype.isWellFormed` (Node 20): false when a surrogate has no partner. */
const isWellFormed = (s: string): boolean => (s as unknown as { isWellFormed: () => boolean }).isWellFormed()

const compileField = (ast: AST.AST): Check => {
  switch (ast._tag) {
    case "StringKeyword":
      return (v) => typeof v === "string" && isWellFormed(v)
    case "NumberKeyword":
      // Non-finite numbers are rejected for every field (see `badValueField`), so the fast path
      // accepts finite numbers only and leaves NaN/Infinity to the slow path.
      return (v) => typeof v === "number" && Number.isFinite(v)
    case "BooleanKeyword":
      return (v) => typeof v === "boolean"
    case "BigIntKeyword":
      return (v) => typeof v === "bigint"
    case "Literal": {
      const literal = ast.literal
      return (v) => v === literal
    }
    case "UndefinedKeyword":
      return (v) => v === undefined
    case "UnknownKeyword":
    case "AnyKeyword":
      return storable
    case "Union": {
      const members = ast.types.map(compileField)
      return (v) => {
        for (const member of members) if (member(v)) return true
        return false
      }
    }
    case "Refinement": {
      const from = compileField(ast.from)
      const filter = ast.filter
      return (v) => from(v) && Option.isNone(filter(v, parseOptions, ast))
    }
    default: {
      const is = Schema.is(Schema.make(ast), { onExcessProperty: "error" })
      return (v) => storable(v) && is(v)
    }
  }
}

interface Field {
  readonly name: string
  readonly optional: boolean
  readonly check: Check
  readonly ast: AST.AST
}

const compileStruct = (ast: AST.AST): ReadonlyArray<Field> | undefined => {
  if (ast._tag !== "TypeLiteral" || ast.indexSignatures.length > 0) return undefined
  const fields: Array<Field> = []
  for (const ps of ast.propertySignatures) {
    if (typeof ps.name !== "string") return undefined
    fields.push({ name: ps.name, optional: ps.isOptional, check: compileField(ps.type), ast: ps.type })
  }
  return fields
}

/**
 * The check of one field's value as a JavaScript expression over `v`, for the kinds worth inlining;
 * `undefined` for the others (they call their compiled `Check`).
 */
const inlineCheck = (ast: AST.AST): string | undefined => {
  switch (ast._tag) {
    case "StringKeyword":
      return `(typeof v === "string" && v.isWellFormed())`
    case "NumberKeyword":
      return `(typeof v === "number" && v - v === 0)`
    case "BooleanKeyword":
      return `(typeof v === "boolean")`
    case "BigIntKeyword":
      return `(typeof v === "bigint")`
    case "Literal":
      return typeof ast.literal === "bigint" ? undefined : `(v === ${JSON.stringify(ast.literal)})`
    case "UndefinedKeyword":
      return `(v === undefined)`
    case "Union": {
      const members = ast.types.map(inlineCheck)
      return members.every((m) => m !== undefined) ? `(${members.join(" || ")})` : undefined
    }
    default:
      return undefined
  }
}

/**
 * The fast path: `true` only when the row is certainly valid. For a struct of named fields it is
 * generated code, one line per field with its property read by name and its check inlined where it
 * is a primitive test: V8 then sees one object shape and no calls, which made validation ~2× cheaper
 * than a loop over the fields (it was a fifth of W0's CPU).
 */
const compileFast = (ast: AST.AST): ((row: unknown) => boolean) => {
  const fields = compileStruct(ast)
  if (fields === undefined) {
    const is = Schema.is(Schema.make(ast), { onExcessProperty: "error" })
    return (row) => !Array.isArray(row) && is(withoutSymbols(row)) && badValueField(row) === undefined
  }
  const checks: Array<Check> = []
  const lines: Array<string> = []
  for (const field of fields) {
    const key = JSON.stringify(field.name)
    let test = inlineCheck(field.ast)
    if (test === undefined) {
      checks.push(field.check)
      test = `c[${checks.length - 1}](v)`
    }
    lines.push(
      field.optional
        ? `v = r[${key}]; if (v !== undefined || ${key} in r) { if (!${test}) return false; n++ }`
        : `v = r[${key}]; if (!${test}) return false; n++`
    )
  }
  // Any other enumerable key is an extra field. Symbol keys are not row data (see `withoutSymbols`);
  // for-in does not list them, and checking for them would cost more than the rest of the path.
  const body = `return function (r) {
    if (typeof r !== "object" || r === null || Array.isArray(r)) return false
    var v, n = 0
    ${lines.join("\n    ")}
    var k = 0
    for (var _ in r) k++
    return k === n
  }`
  return new Function("c", body)(checks) as (row: unknown) => boolean
}

/**
 * A row's symbol-keyed properties are not data: no executor writes them and JSON drops them. So
 * validation ignores them: Schema (which counts them as extra properties) is given the row without
 * them.
 */
const withoutSymbols = (row: unknown): unknown => {
  if (typeof row !== "object" || row === null || Object.getOwnPropertySymbols(row).length === 0) return row
  const copy: Record<string, unknown> = Object.create(Object.getPrototypeOf(row))
  for (const key of Object.keys(row)) copy[key] = (row as Record<string, unknown>)[key]
  return copy
}

/** The first top-level field whose value no sink stores as given, and why (see `storable`). */
const badValueField = (
  row: unknown
): { readonly field: string; readonly problem: InvalidRowProblem; readonly detail: string } | undefined => {
  if (typeof row !== "object" || row === null) return undefined
  for (const [field, value] of Object.entries(row)) {
    if (storable(value)) continue
    return typeof value === "number"
      ? { field, problem: "not_finite", detail: "got a non-finite number" }
      : typeof value === "string"
        ? { field, problem: "lone_surrogate", detail: "got a string that is not well-formed UTF-16" }
        : { field, problem: "invalid_date", detail: "got an invalid Date" }
  }
  return undefined
}

/** The value each rejection was about, for `withValue`; rows with no such value (`missing`) have none. */
const offending = new WeakMap<InvalidRow, { readonly value: unknown }>()

const reject = (invalid: InvalidRow, value: { readonly value: unknown } | undefined): InvalidRow => {
  if (value !== undefined) offending.set(invalid, value)
  return invalid
}

/** `typeof`, with null and arrays told apart. */
const typeName = (value: unknown): string =>
  value === null ? "null" : Array.isArray(value) ? "an array" : typeof value

const withArticle = (type: string): string =>
  type === "null" || type === "undefined" || type.startsWith("an ")
    ? type
    : `${/^[aeiou]/.test(type) ? "an" : "a"} ${type}`

const expectedOf = (ast: AST.AST): string =>
  AST.getDescriptionAnnotation(ast).pipe(
    Option.orElse(() => AST.getTitleAnnotation(ast)),
    Option.orElse(() => AST.getIdentifierAnnotation(ast)),
    Option.getOrElse(() => String(ast))
  )

interface Leaf {
  /** The schema of the offending field (the node right after the last path segment). */
  readonly field: AST.AST | undefined
  readonly actual: unknown
  /** Whether the value has the right type but fails a refinement. */
  readonly refinement: boolean
}

/**
 * Follows the first issue down to its leaf, the way `ArrayFormatter` picks the first issue, keeping
 * what a value-free detail needs (Schema's own messages quote the value).
 */
const leafOf = (root: ParseResult.ParseIssue): Leaf => {
  let issue = root
  let field: AST.AST | undefined
  let atField = true
  let refinement = false
  for (;;) {
    if (issue._tag === "Pointer") {
      atField = true
      refinement = false
      issue = issue.issue
      continue
    }
    if (atField && issue._tag !== "Unexpected" && issue._tag !== "Missing") {
      field = issue.ast
      atField = false
    }
    switch (issue._tag) {
      case "Composite":
        issue = Array.isArray(issue.issues) ? issue.issues[0]! : (issue.issues as ParseResult.ParseIssue)
        continue
      case "Refinement":
        if (issue.kind === "Predicate") refinement = true
        issue = issue.issue
        continue
      case "Transformation":
        issue = issue.issue
        continue
      default:
        return { field, actual: issue.actual, refinement }
    }
  }
}

const wrongTypeDetail = (leaf: Leaf): string => {
  const expected = leaf.field === undefined ? "another type" : expectedOf(leaf.field)
  const type = typeName(leaf.actual)
  return leaf.refinement
    ? `expected ${expected}, got ${withArticle(type)} that is not`
    : `expected ${expected}, got ${type}`
}

const problemOf = (
  issue: ParseResult.ArrayFormatterIssue,
  row: Record<PropertyKey, unknown>
): InvalidRowProblem => {
  // A required field holding `undefined` is as good as absent.
  if (issue.path.length === 1 && row[issue.path[0]!] === undefined) return "missing"
  switch (issue._tag) {
    case "Missing":
      return "missing"
    case "Unexpected":
      return "extra"
    default:
      return "wrong_type"
  }
}

/**
 * Builds the validator of one target. The returned function gives `undefined` for a valid row and
 * an `InvalidRow` naming the first offending field otherwise.
 *
 * @internal
 */
export const makeValidator = (target: string, schema: Schema.Schema.AnyNoContext): RowValidator => {
  const ast = AST.typeAST(schema.ast)
  const fast = compileFast(ast)
  const slow = Schema.validateEither(Schema.make(ast), { errors: "first", onExcessProperty: "error" })
  return (row) => {
    if (fast(row)) return undefined
    if (typeof row !== "object" || row === null || Array.isArray(row)) {
      return reject(
        new InvalidRow({
          target,
          field: "",
          problem: "not_an_object",
          detail: `expected an object, got ${typeName(row)}`
        }),
        { value: row }
      )
    }
    const bad = badValueField(row)
    if (bad !== undefined) {
      return reject(new InvalidRow({ target, field: bad.field, problem: bad.problem, detail: bad.detail }), {
        value: (row as Record<string, unknown>)[bad.field]
      })
    }
    const result = slow(withoutSymbols(row))
    if (result._tag === "Right") return undefined
    const issue = ParseResult.ArrayFormatter.formatErrorSync(result.left)[0]
    if (issue === undefined)
      return new InvalidRow({ target, field: "", problem: "wrong_type", detail: "invalid" })
    const problem = problemOf(issue, row as Record<PropertyKey, unknown>)
    const leaf = leafOf(result.left.issue)
    return reject(
      new InvalidRow({
        target,
        field: issue.path.map(String).join("."),
        problem,
        // "is missing" and "is unexpected, expected: …" name no value; the others would.
        detail: problem === "wrong_type" ? wrongTypeDetail(leaf) : issue.message
      }),
      problem === "missing" ? undefined : { value: leaf.actual }
    )
  }
}

/**
 * The same rejection for row `index` of a `submitAll`, still linked to its offending value.
 *
 * @internal
 */
export const withIndex = (invalid: InvalidRow, index: number): InvalidRow => {
  const { target, field, problem, detail } = invalid
  return reject(new InvalidRow({ target, field, problem, detail, index }), offending.get(invalid))
}

/**
 * The rejection with the offending value appended to its detail, or `[REDACTED]` when a segment of
 * the field's path is a sensitive column (sensitive fields nested in the value are redacted too).
 * For flows with `logRowValues`.
 *
 * @internal
 */
export const withValue = (invalid: InvalidRow, redaction: Redaction): InvalidRow => {
  const source = offending.get(invalid)
  if (source === undefined) return invalid
  const sensitive = invalid.field !== "" && invalid.field.split(".").some(redaction.isSensitive)
  const shown = sensitive ? redacted : formatValue(source.value, redaction.isSensitive)
  const { target, field, problem, detail, index } = invalid
  return new InvalidRow({
    target,
    field,
    problem,
    detail: `${detail} (value: ${shown})`,
    ...(index === undefined ? {} : { index })
  })
}

/**
 * The slow path alone (Schema plus the storable-value rule), for tests that compare verdicts.
 *
 * @internal
 */
export const makeReferenceValidator = (schema: Schema.Schema.AnyNoContext): ((row: unknown) => boolean) => {
  const is = Schema.is(Schema.make(AST.typeAST(schema.ast)), { onExcessProperty: "error" })
  return (row) => !Array.isArray(row) && is(withoutSymbols(row)) && badValueField(row) === undefined
}

/** @internal */
export const makeFastValidator = (schema: Schema.Schema.AnyNoContext): ((row: unknown) => boolean) =>
  compileFast(AST.typeAST(schema.ast))
