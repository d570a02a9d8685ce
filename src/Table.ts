/**
 * A SQL table as a target: its name, its columns (an effect/Schema struct: rows are checked against
 * it at submit), and what to do when a row collides with an existing one (`Conflict`). A `Table` IS a
 * `Target`, so it is used with `flow.submit` / `flow.write` like any other; the SQL executors of
 * `Postgres`, `Mysql` and `Sqlite` write it with the dialect's native statement.
 *
 * Names are checked when the table is made and always quoted in SQL; values are always bound, never
 * spliced into the statement text.
 *
 * @since 0.1.0
 */
import * as Either from "effect/Either"
import * as Predicate from "effect/Predicate"
import * as Schema from "effect/Schema"
import * as BatchFlowError from "./BatchFlowError.js"
import * as Conflict from "./Conflict.js"
import { describeColumns, hasInternals, keyFunction, register, structFields } from "./internal/sql/table.js"
import * as Target from "./Target.js"

/**
 * @since 0.1.0
 * @category type ids
 */
export const TypeId: unique symbol = Symbol.for("effect-batchflow/Table")

/**
 * @since 0.1.0
 * @category type ids
 */
export type TypeId = typeof TypeId

/**
 * @since 0.1.0
 * @category models
 */
export interface Table<A> extends Target.Target<A> {
  readonly [TypeId]: TypeId
  /** The table name split at the dot: `["users"]` or `["app", "users"]` (schema-qualified). */
  readonly path: ReadonlyArray<string>
  /** The columns written, in the schema's field order. */
  readonly columns: ReadonlyArray<string>
  readonly conflict: Conflict.Conflict
  /**
   * The columns a collision overwrites: the `set` columns for `update` (default every column outside
   * the target), every non-key column for `replace`, none otherwise.
   */
  readonly updateColumns: ReadonlyArray<string>
}

/**
 * Any table, whatever its row type.
 *
 * @since 0.1.0
 * @category models
 */
export interface Any extends Target.Any {
  readonly [TypeId]: TypeId
  readonly path: ReadonlyArray<string>
  readonly columns: ReadonlyArray<string>
  readonly conflict: Conflict.Conflict
  readonly updateColumns: ReadonlyArray<string>
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Options<A, I> {
  /** The row schema: a struct whose field names are the column names. */
  readonly columns: Schema.Schema<A, I>
  /** Default `Conflict.none`. */
  readonly conflict?: Conflict.Conflict | undefined
  /**
   * The unique key rows are deduplicated and ordered by. For `Conflict.update` it is the conflict
   * target (pass it only if equal); `Conflict.replace` needs it; for `Conflict.ignore` it narrows
   * PostgreSQL's `ON CONFLICT` to that key.
   */
  readonly key?: ReadonlyArray<keyof A & string> | undefined
  /**
   * Whether rows with the same key are committed in submission order when `concurrency > 1`.
   * Default: true when the table has a key.
   */
  readonly ordered?: boolean | undefined
}

/**
 * A table definition was rejected by `Table.make`: a name that is not a plain identifier, a key or
 * conflict column that is not a column, or a mode without what it needs.
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidTable extends Schema.TaggedError<InvalidTable>()("InvalidTable", {
  table: Schema.String,
  /** What is wrong: `name`, `columns`, `columns.<name>`, `key`, `conflict.target` or `conflict.set`. */
  field: Schema.String,
  detail: Schema.String
}) {
  /** @since 0.1.0 */
  readonly [BatchFlowError.TypeId]: BatchFlowError.TypeId = BatchFlowError.TypeId
  /** @since 0.1.0 */
  override get message(): string {
    return `Invalid table ${JSON.stringify(this.table)}: ${this.field} ${this.detail}.`
  }
}

/**
 * Plain identifiers only: a letter or `_`, then letters, digits or `_`, at most 63 characters
 * (PostgreSQL silently truncates longer names).
 *
 * @since 0.1.0
 * @category refinements
 */
export const isIdentifier = (name: string): boolean => /^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(name)

/**
 * @since 0.1.0
 * @category refinements
 */
export const isTable = (u: unknown): u is Any => Predicate.hasProperty(u, TypeId) && hasInternals(u)

const identifierRule = "must be a plain identifier (a letter or _, then letters, digits or _; at most 63)"

const check = <A, I>(name: string, options: Options<A, I>) => {
  const fail = (field: string, detail: string) =>
    Either.left(new InvalidTable({ table: name, field, detail }))
  const path = name.split(".")
  if (path.length > 2 || !path.every(isIdentifier)) {
    return fail("name", `${identifierRule}, optionally qualified by a schema as schema.table`)
  }
  const fields = structFields(options.columns.ast)
  if (fields === undefined) return fail("columns", "must be a Schema.Struct (no index signatures)")
  if (fields.length === 0) return fail("columns", "must declare at least one column")
  const columns: Array<string> = []
  for (const field of fields) {
    if (typeof field.name !== "string" || !isIdentifier(field.name)) {
      return fail(`columns.${String(field.name)}`, identifierRule)
    }
    columns.push(field.name)
  }
  const conflict = options.conflict ?? Conflict.none
  const unknownColumn = (list: ReadonlyArray<string>) => list.find((c) => !columns.includes(c))
  const duplicated = (list: ReadonlyArray<string>) => list.find((c, i) => list.indexOf(c) !== i)
  const checkList = (field: string, list: ReadonlyArray<string>) => {
    const unknown = unknownColumn(list)
    if (unknown !== undefined) return fail(field, `names ${JSON.stringify(unknown)}, which is not a column`)
    const twice = duplicated(list)
    if (twice !== undefined) return fail(field, `names ${JSON.stringify(twice)} twice`)
    return undefined
  }
  let key: ReadonlyArray<string> = options.key ?? []
  const keyProblem = checkList("key", key)
  if (keyProblem) return keyProblem
  let updateColumns: ReadonlyArray<string> = []
  switch (conflict._tag) {
    case "Update": {
      if (conflict.target.length === 0) return fail("conflict.target", "must name at least one column")
      const targetProblem = checkList("conflict.target", conflict.target)
      if (targetProblem) return targetProblem
      if (options.key !== undefined && options.key.join(",") !== conflict.target.join(",")) {
        return fail("key", "must equal conflict.target for Conflict.update (or be left out)")
      }
      key = conflict.target
      if (conflict.set !== undefined) {
        const setProblem = checkList("conflict.set", conflict.set)
        if (setProblem) return setProblem
        const inTarget = conflict.set.find((c) => key.includes(c))
        if (inTarget !== undefined) {
          return fail("conflict.set", `names ${JSON.stringify(inTarget)}, which is in conflict.target`)
        }
      }
      updateColumns = conflict.set ?? columns.filter((c) => !key.includes(c))
      if (updateColumns.length === 0) {
        return fail("conflict.set", "is empty: there is nothing to update (use Conflict.ignore)")
      }
      break
    }
    case "Replace":
      if (key.length === 0) return fail("key", "is required by Conflict.replace: name the unique key")
      updateColumns = columns.filter((c) => !key.includes(c))
      break
  }
  return Either.right({ path, columns, conflict, key, updateColumns })
}

/**
 * Makes a table, or returns why the definition is invalid.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeEither = <A, I>(
  name: string,
  options: Options<A, I>
): Either.Either<Table<A>, InvalidTable> =>
  Either.map(check(name, options), ({ path, columns, conflict, key, updateColumns }) => {
    const schema = options.columns as unknown as Schema.Schema.AnyNoContext
    const described = describeColumns(schema, columns)
    const keyOf = keyFunction(
      key,
      key.map((k) => described.kinds[columns.indexOf(k)] === "plain")
    )
    const target = Target.make(name, {
      schema: options.columns,
      key: key as ReadonlyArray<keyof A & string>,
      ordered: options.ordered,
      // Re-sent rows are skipped or overwrite themselves only when a conflict mode meets a key.
      idempotentWrites: conflict._tag !== "None" && key.length > 0
    })
    const table: Table<A> = {
      ...target,
      [TypeId]: TypeId,
      keyOf: keyOf as (row: A) => unknown,
      path,
      columns,
      conflict,
      updateColumns
    }
    register(table, { ...described, keyOf, templates: new Map() })
    return table
  })

/**
 * Makes a table. Throws `InvalidTable` (naming the offending field) when a name is not a plain
 * identifier or the conflict mode does not fit the columns; use `makeEither` to get it as a value.
 * Rows are grouped by table identity, so define each table once and reuse it.
 *
 * @example
 * ```ts
 * import { Schema } from "effect"
 * import { Conflict, Table } from "effect-batchflow"
 *
 * const Users = Table.make("users", {
 *   columns: Schema.Struct({ id: Schema.Number, name: Schema.String, email: Schema.String }),
 *   conflict: Conflict.update({ target: ["id"], set: ["name", "email"] })
 * })
 * ```
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = <A, I>(name: string, options: Options<A, I>): Table<A> => {
  const result = makeEither(name, options)
  if (Either.isLeft(result)) throw result.left
  return result.right
}
