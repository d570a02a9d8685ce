/**
 * Row validation at submit.
 *
 * `Schema` is the ground truth, but running it costs ≈ 0.23 µs per row, almost the whole per-row
 * budget of the engine. So each target compiles a fast checker from its schema's AST: plain
 * `typeof` tests for primitive fields, the schema's own filter functions for refinements, and
 * `Schema.is` for any field shape it does not know. The fast checker only ever answers "valid";
 * anything it cannot accept at once goes to the slow path, which asks `Schema` for the verdict and
 * builds the error. So both paths give the same verdict by construction (a property test checks it).
 */
import * as Option from "effect/Option"
import * as ParseResult from "effect/ParseResult"
import * as Schema from "effect/Schema"
import * as AST from "effect/SchemaAST"
import { InvalidRow, type InvalidRowProblem } from "../BatchFlowError.js"

/** @internal */
export type RowValidator = (row: unknown) => InvalidRow | undefined

type Check = (value: unknown) => boolean

const parseOptions: AST.ParseOptions = {}

const compileField = (ast: AST.AST): Check => {
  switch (ast._tag) {
    case "StringKeyword":
      return (v) => typeof v === "string"
    case "NumberKeyword":
      // Non-finite numbers are rejected for every field (see `nonFiniteField`), so the fast path
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
      return (v) => typeof v !== "number" || Number.isFinite(v)
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
      return (v) => (typeof v !== "number" || Number.isFinite(v)) && is(v)
    }
  }
}

interface Field {
  readonly name: string
  readonly optional: boolean
  readonly check: Check
}

const compileStruct = (ast: AST.AST): ReadonlyArray<Field> | undefined => {
  if (ast._tag !== "TypeLiteral" || ast.indexSignatures.length > 0) return undefined
  const fields: Array<Field> = []
  for (const ps of ast.propertySignatures) {
    if (typeof ps.name !== "string") return undefined
    fields.push({ name: ps.name, optional: ps.isOptional, check: compileField(ps.type) })
  }
  return fields
}

/** The fast path: `true` only when the row is certainly valid. */
const compileFast = (ast: AST.AST): ((row: unknown) => boolean) => {
  const fields = compileStruct(ast)
  if (fields === undefined) {
    const is = Schema.is(Schema.make(ast), { onExcessProperty: "error" })
    return (row) => !Array.isArray(row) && is(row) && nonFiniteField(row) === undefined
  }
  const count = fields.length
  return (row) => {
    if (typeof row !== "object" || row === null || Array.isArray(row)) return false
    const record = row as Record<string, unknown>
    let present = 0
    for (let i = 0; i < count; i++) {
      const field = fields[i]!
      const value = record[field.name]
      if (value === undefined && field.optional && !(field.name in record)) continue
      if (!field.check(value)) return false
      present++
    }
    let keys = 0
    for (const _ in record) keys++
    // Symbol keys are extra properties too (for-in does not list them).
    return keys === present && Object.getOwnPropertySymbols(record).length === 0
  }
}

const nonFiniteField = (row: unknown): string | undefined => {
  if (typeof row !== "object" || row === null) return undefined
  for (const [key, value] of Object.entries(row)) {
    if (typeof value === "number" && !Number.isFinite(value)) return key
  }
  return undefined
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
      return new InvalidRow({
        target,
        field: "",
        problem: "not_an_object",
        detail: `expected an object, got ${row === null ? "null" : Array.isArray(row) ? "an array" : typeof row}`
      })
    }
    const nonFinite = nonFiniteField(row)
    if (nonFinite !== undefined) {
      return new InvalidRow({
        target,
        field: nonFinite,
        problem: "not_finite",
        detail: `got ${String((row as Record<string, unknown>)[nonFinite])}`
      })
    }
    const result = slow(row)
    if (result._tag === "Right") return undefined
    const issue = ParseResult.ArrayFormatter.formatErrorSync(result.left)[0]
    if (issue === undefined)
      return new InvalidRow({ target, field: "", problem: "wrong_type", detail: "invalid" })
    return new InvalidRow({
      target,
      field: issue.path.map(String).join("."),
      problem: problemOf(issue, row as Record<PropertyKey, unknown>),
      detail: issue.message
    })
  }
}

/**
 * The slow path alone (Schema plus the non-finite rule), for tests that compare verdicts.
 *
 * @internal
 */
export const makeReferenceValidator = (schema: Schema.Schema.AnyNoContext): ((row: unknown) => boolean) => {
  const is = Schema.is(Schema.make(AST.typeAST(schema.ast)), { onExcessProperty: "error" })
  return (row) => !Array.isArray(row) && is(row) && nonFiniteField(row) === undefined
}

/** @internal */
export const makeFastValidator = (schema: Schema.Schema.AnyNoContext): ((row: unknown) => boolean) =>
  compileFast(AST.typeAST(schema.ast))
