/**
 * The part of the bench harness the three SQL backends share: the W1 `Table`, the DDL, reset,
 * the integrity check (COUNT, id range, a full content predicate, and a field-by-field spot check),
 * the test hook and cleanup, all through the `@effect/sql` client the flow uses.
 *
 * @since 0.1.0
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as BatchFlow from "../BatchFlow.js"
import * as Conflict from "../Conflict.js"
import * as Sql from "../Sql.js"
import * as Table from "../Table.js"
import { type Harness, integrityOf, spotIds, tamperedIds } from "./harness.js"
import { type Baseline, rowsOf } from "./raw.js"
import { type BenchRow, BenchRowSchema, type BenchSpec, type ConflictName, makeRow } from "./workload.js"

/**
 * What differs between the dialects in the bench's own SQL.
 *
 * @since 0.1.0
 * @category models
 */
export interface DialectSql {
  readonly name: Sql.Dialect
  readonly quote: (identifier: string) => string
  /** The column type of `amount`. */
  readonly double: string
  /** An expression equal to `'user-' || id`. */
  readonly expectedName: string
  /** A predicate: `created_at` holds `CREATED_AT`. */
  readonly createdAtIsExpected: string
  /** `created_at` as `YYYY-MM-DD HH:MM:SS` text. */
  readonly createdAtText: string
  /** Run after every reset (outside the clock), e.g. PostgreSQL's `CHECKPOINT`; failures ignored. */
  readonly afterReset?: string | undefined
}

/**
 * The columns a collision overwrites (all but the key), for the baselines' statements.
 *
 * @since 0.1.0
 * @category constants
 */
export const valueColumns: ReadonlyArray<keyof BenchRow & string> = [
  "user_id",
  "name",
  "amount",
  "created_at"
]

/**
 * The columns in table order.
 *
 * @since 0.1.0
 * @category constants
 */
export const allColumns: ReadonlyArray<keyof BenchRow & string> = ["id", ...valueColumns]

/**
 * The `Conflict` of a `--conflict` name (the key is always `id`).
 *
 * @since 0.1.0
 * @category constructors
 */
export const conflictOf = (name: ConflictName): Conflict.Conflict => {
  switch (name) {
    case "none":
      return Conflict.none
    case "ignore":
      return Conflict.ignore
    case "replace":
      return Conflict.replace
    case "update":
      return Conflict.update({ target: ["id"] })
  }
}

/**
 * The W1 table as a BatchFlow `Table`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const benchTable = (spec: BenchSpec): Table.Table<BenchRow> =>
  Table.make(spec.table, { columns: BenchRowSchema, conflict: conflictOf(spec.conflict), key: ["id"] })

/**
 * Flattens rows `first..last` into one parameter list in column order.
 *
 * @since 0.1.0
 * @category utils
 */
export const flatParams = (first: number, last: number): Array<unknown> => {
  const params: Array<unknown> = []
  for (let id = first; id <= last; id++) {
    const row = makeRow(id)
    params.push(row.id, row.user_id, row.name, row.amount, row.created_at)
  }
  return params
}

const toNumber = (u: unknown): number => (u === null || u === undefined ? 0 : Number(u))

/**
 * Builds a SQL backend's harness from its client context and flow layer.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: {
  readonly spec: BenchSpec
  readonly description: string
  /** The BatchFlow module used, e.g. `effect-batchflow/Sqlite`. */
  readonly module: string
  readonly notes: ReadonlyArray<string>
  readonly dialect: DialectSql
  readonly client: Context.Context<SqlClient.SqlClient>
  readonly flowLayer: Layer.Layer<BatchFlow.BatchFlow, unknown, SqlClient.SqlClient>
  readonly baselines: ReadonlyArray<Baseline>
}): Harness => {
  const { spec, dialect } = options
  const table = benchTable(spec)
  const t = dialect.quote(spec.table)
  const q = dialect.quote
  const withSql = <A>(f: (sql: SqlClient.SqlClient) => Effect.Effect<A, unknown>) =>
    Effect.provide(Effect.flatMap(SqlClient.SqlClient, f), options.client)
  const ddl = `CREATE TABLE ${t} (${q("id")} BIGINT PRIMARY KEY, ${q("user_id")} BIGINT NOT NULL, ${q("name")} VARCHAR(64) NOT NULL, ${q("amount")} ${dialect.double} NOT NULL, ${q("created_at")} TIMESTAMP NOT NULL)`
  const reset = withSql((sql) =>
    Effect.gen(function* () {
      yield* sql.unsafe(`DROP TABLE IF EXISTS ${t}`)
      yield* sql.unsafe(ddl)
      if (dialect.afterReset !== undefined) yield* Effect.ignore(sql.unsafe(dialect.afterReset))
    })
  )
  const verify = (rows: number) =>
    withSql((sql) =>
      Effect.gen(function* () {
        const [summary] = yield* sql.unsafe<Record<string, unknown>>(
          `SELECT COUNT(*) AS n, MIN(${q("id")}) AS lo, MAX(${q("id")}) AS hi, ` +
            `SUM(CASE WHEN ${q("user_id")} = ${q("id")} % 1000 AND ${q("name")} = ${dialect.expectedName} ` +
            `AND ${q("amount")} = ${q("id")} * 0.5 AND ${dialect.createdAtIsExpected} THEN 0 ELSE 1 END) AS wrong ` +
            `FROM ${t}`
        )
        const found = toNumber(summary?.n)
        const problems: Array<string> = []
        if (found > 0 && (toNumber(summary?.lo) < 1 || toNumber(summary?.hi) > rows)) {
          problems.push(`ids outside 1..${rows} (min ${toNumber(summary?.lo)}, max ${toNumber(summary?.hi)})`)
        }
        const ids = spotIds(rows)
        const got = yield* sql.unsafe<Record<string, unknown>>(
          `SELECT ${q("id")} AS id, ${q("user_id")} AS user_id, ${q("name")} AS name, ${q("amount")} AS amount, ` +
            `${dialect.createdAtText} AS created_at FROM ${t} WHERE ${q("id")} IN (${ids.join(", ")})`
        )
        const byId = new Map(got.map((row) => [toNumber(row.id), row]))
        for (const id of ids) {
          const row = byId.get(id)
          const expected = makeRow(id)
          if (row === undefined) {
            problems.push(`spot check: id ${id} is missing`)
          } else if (
            toNumber(row.user_id) !== expected.user_id ||
            row.name !== expected.name ||
            toNumber(row.amount) !== expected.amount ||
            String(row.created_at) !== expected.created_at
          ) {
            problems.push(
              `spot check: id ${id} holds ${JSON.stringify({ user_id: row.user_id, name: row.name, amount: row.amount, created_at: row.created_at })}, expected ${JSON.stringify(expected)}`
            )
          }
        }
        return integrityOf({
          expected: rows,
          found,
          wrongContent: toNumber(summary?.wrong),
          spotChecked: ids.length,
          problems
        })
      })
    )
  const statement = Sql.preview(dialect.name, table, [makeRow(1)]).sql
  return {
    description: options.description,
    flowDescription: `${options.module}, ${spec.submitAll ? "submitAll" : "per-row submit"} from ${spec.producers} producers; per batch: ${statement}`,
    notes: options.notes,
    flowLayer: options.flowLayer.pipe(Layer.provide(Layer.succeedContext(options.client))),
    ops: (flow) => ({
      submit: (id) => flow.submit(table, makeRow(id)),
      submitAll: (first, last) => flow.submitAll(table, rowsOf(first, last)),
      write: (id) => flow.write(table, makeRow(id))
    }),
    reset,
    verify,
    tamper: (tamper, rows) =>
      withSql((sql) => {
        const ids = tamperedIds(tamper.rows, rows).join(", ")
        return tamper.kind === "delete"
          ? sql.unsafe(`DELETE FROM ${t} WHERE ${q("id")} IN (${ids})`)
          : sql.unsafe(`UPDATE ${t} SET ${q("name")} = 'tampered' WHERE ${q("id")} IN (${ids})`)
      }),
    baselines: options.baselines,
    cleanup: withSql((sql) => sql.unsafe(`DROP TABLE IF EXISTS ${t}`))
  }
}

/**
 * The conflict clause of the raw baselines for PostgreSQL and SQLite (`ON CONFLICT …`), or `""`.
 *
 * @since 0.1.0
 * @category utils
 */
export const onConflict = (
  conflict: ConflictName,
  quote: (s: string) => string,
  excluded: string
): string => {
  switch (conflict) {
    case "none":
      return ""
    case "ignore":
      return ` ON CONFLICT (${quote("id")}) DO NOTHING`
    case "replace":
    case "update":
      return ` ON CONFLICT (${quote("id")}) DO UPDATE SET ${valueColumns.map((c) => `${quote(c)} = ${excluded}.${quote(c)}`).join(", ")}`
  }
}
