/**
 * SQL writing shared by the PostgreSQL, MySQL/MariaDB and SQLite backends: the statement each
 * dialect gets for a table and a batch (`preview`), its fingerprint, the per-statement limits, the
 * error classification rule for the drivers' errors, the SQL errors and the dedupe metrics.
 *
 * This module needs no database driver. The executors that write `Table`s through an `@effect/sql`
 * client are in `effect-batchflow/Postgres`, `effect-batchflow/Mysql` and `effect-batchflow/Sqlite`.
 *
 * @since 0.1.0
 */
import * as Metric from "effect/Metric"
import * as Conflict from "./Conflict.js"
import * as build from "./internal/sql/build.js"
import * as errors from "./internal/sql/errors.js"
import { sqlRule } from "./internal/sql/rules.js"
import type * as Retry from "./Retry.js"
import type * as Table from "./Table.js"

/**
 * @since 0.1.0
 * @category models
 */
export type Dialect = "pg" | "mysql" | "sqlite"

/**
 * PostgreSQL statement form. `json` (default) sends the batch as one JSON parameter read by
 * `json_populate_recordset(NULL::table, $1::json)`: the table's own column types convert the values,
 * the statement text does not depend on the batch size, and there is no parameter limit. `values` is
 * the classic multi-row `VALUES ($1, $2), …` list (65,535 parameters per statement at most).
 * `unnest` sends one text array literal per column, built by the executor, read by
 * `unnest($1::bigint[], $2::text[], …)` with the column types read from the catalog: less CPU on
 * both sides than `json` (see the SQL guide); tables with array columns, and `preview` (which has no
 * catalog), use the JSON form.
 *
 * @since 0.1.0
 * @category models
 */
export type PgForm = "json" | "values" | "unnest"

/**
 * How statements are built. Batches that exceed a limit are split into several statements run in
 * one transaction.
 *
 * @since 0.1.0
 * @category models
 */
export interface StatementOptions {
  /**
   * PostgreSQL only. Default `unnest` (one array literal per column, the column types read from the
   * catalog once per table; tables with array columns use `json`). `json`: one JSON parameter;
   * `values`: a multi-row `VALUES` list.
   */
  readonly pgForm?: PgForm | undefined
  /** Bind parameters per statement; default and maximum: the dialect's limit (see `limits`). */
  readonly maxParams?: number | undefined
  /**
   * Estimated bytes per statement (strings count 3 bytes per character, bytes 2 per byte). Default:
   * 4 MiB on MySQL (below the default `max_allowed_packet`), 64 MiB on PostgreSQL, no limit on
   * SQLite (bound values do not count towards its statement length).
   */
  readonly maxStatementBytes?: number | undefined
}

/**
 * Per-dialect statement limits: bind parameters per statement (PostgreSQL's and MySQL's protocol
 * limit, SQLite's default `SQLITE_MAX_VARIABLE_NUMBER`) and the default estimated statement size.
 *
 * @since 0.1.0
 * @category constants
 */
export const limits: Readonly<
  Record<Dialect, { readonly maxParams: number; readonly maxStatementBytes: number }>
> = build.limits

/**
 * One statement of a batch.
 *
 * @since 0.1.0
 * @category models
 */
export interface PreviewStatement {
  readonly sql: string
  readonly args: ReadonlyArray<unknown>
  /** Rows this statement writes. */
  readonly rows: number
}

/**
 * What a batch becomes: built by the same code as execution, without a database.
 *
 * @since 0.1.0
 * @category models
 */
export interface Preview {
  readonly dialect: Dialect
  readonly table: string
  readonly mode: "none" | "ignore" | "replace" | "update"
  /** The key collisions are detected on (and rows are merged by). */
  readonly conflictTarget: ReadonlyArray<string>
  readonly updateColumns: ReadonlyArray<string>
  /** The first statement's SQL (`""` for no rows). */
  readonly sql: string
  /** Bind parameters over all statements. */
  readonly argCount: number
  /** Every statement; more than one runs in one transaction. */
  readonly statements: ReadonlyArray<PreviewStatement>
  /** In-batch dedupe: rows in, rows out, rows with a NULL key part (never merged). */
  readonly dedupe: { readonly rowsIn: number; readonly rowsOut: number; readonly nullKeys: number }
  /** The statement's shape (see `fingerprint`): the same for every batch size. */
  readonly fingerprint: string
}

/**
 * Shows the statements a batch of rows becomes for a dialect. Throws `RowEncodeError` when a row
 * cannot be encoded with the table's schema.
 *
 * @example
 * ```ts
 * import { Schema } from "effect"
 * import { Conflict, Sql, Table } from "effect-batchflow"
 *
 * const Users = Table.make("users", {
 *   columns: Schema.Struct({ id: Schema.Number, name: Schema.String }),
 *   conflict: Conflict.ignore,
 *   key: ["id"]
 * })
 * const preview = Sql.preview("mysql", Users, [{ id: 1, name: "a" }, { id: 1, name: "b" }])
 * // preview.sql: "INSERT IGNORE INTO `users` (`id`, `name`) VALUES (?, ?)", preview.dedupe.rowsOut: 1
 * ```
 *
 * @since 0.1.0
 * @category preview
 */
export const preview = <A>(
  dialect: Dialect,
  table: Table.Table<A>,
  rows: ReadonlyArray<A>,
  options?: StatementOptions
): Preview => {
  const planned = build.plan(dialect, table, rows, build.buildOptions(dialect, options))
  const statements = planned.statements.map((s) => ({ sql: s.sql, args: s.params, rows: s.rows }))
  return {
    dialect,
    table: table.name,
    mode: Conflict.mode(table.conflict),
    conflictTarget: table.key,
    updateColumns: table.updateColumns,
    sql: statements[0]?.sql ?? "",
    argCount: statements.reduce((n, s) => n + s.args.length, 0),
    statements,
    dedupe: planned.dedupe,
    fingerprint: fingerprint(dialect, table, options)
  }
}

/**
 * The statement's shape as 16 hex digits: FNV-1a 64 of the dialect and the statement text for one
 * row. It names the table, columns and mode, not the batch size, so it is a low-cardinality label.
 *
 * @since 0.1.0
 * @category preview
 */
export const fingerprint = (dialect: Dialect, table: Table.Any, options?: StatementOptions): string =>
  build.fingerprintOf(dialect, table, options?.pgForm ?? build.defaultPgForm)

/**
 * The classification rule for SQL errors: PostgreSQL SQLSTATEs, MySQL/MariaDB errnos, SQLite result
 * codes and Node socket errors found in `SqlError.cause`. Answers `undefined` for errors it does not
 * know. The full table is in `docs/guides/sql.md`.
 *
 * @since 0.1.0
 * @category classification
 */
export const classify: Retry.Rule = sqlRule

/**
 * The SQL executor's rules (given to the engine with the executor).
 *
 * @since 0.1.0
 * @category classification
 */
export const rules: ReadonlyArray<Retry.Rule> = [sqlRule]

/**
 * The client's dialect is not one effect-batchflow writes, or not the one the layer expects.
 *
 * @since 0.1.0
 * @category errors
 */
export const UnsupportedDialect: typeof errors.UnsupportedDialect = errors.UnsupportedDialect

/**
 * @since 0.1.0
 * @category errors
 */
export type UnsupportedDialect = errors.UnsupportedDialect

/**
 * A row could not be encoded with its table's schema. Row-level (`bad_value`): the engine isolates it.
 *
 * @since 0.1.0
 * @category errors
 */
export const RowEncodeError: typeof errors.RowEncodeError = errors.RowEncodeError

/**
 * @since 0.1.0
 * @category errors
 */
export type RowEncodeError = errors.RowEncodeError

/**
 * A row's value would not be stored as it is: its column would round it (a fraction into an integer
 * column, more fractional digits than a DECIMAL / `numeric(p, s)` scale) or clamp it (outside the
 * column's range). Found before the write from the column types the server's catalog gives (MySQL /
 * MariaDB: integer types, BIT, YEAR, DECIMAL; PostgreSQL: `numeric(p, s)`). Row-level
 * (`bad_value`): the engine isolates the row and commits the others. `column` names the field.
 *
 * @since 0.1.0
 * @category errors
 */
export const ColumnValueError: typeof errors.ColumnValueError = errors.ColumnValueError

/**
 * @since 0.1.0
 * @category errors
 */
export type ColumnValueError = errors.ColumnValueError

/**
 * Reading a table's column types from the server's catalog failed: nothing was written. Classified
 * by its cause (e.g. a lost connection: retryable `connection`), never as an unknown outcome.
 *
 * @since 0.1.0
 * @category errors
 */
export const ColumnLookupError: typeof errors.ColumnLookupError = errors.ColumnLookupError

/**
 * @since 0.1.0
 * @category errors
 */
export type ColumnLookupError = errors.ColumnLookupError

/**
 * A batch's statement failed. Carries the table, the driver's message and code (SQLSTATE, MySQL
 * errno or SQLite result code) and, as `cause`, the `SqlError` from `@effect/sql` (whose own `cause`
 * is the driver's error object). This is the `cause` of a SQL `BatchFailure`.
 *
 * @since 0.1.0
 * @category errors
 */
export const SqlWriteError: typeof errors.SqlWriteError = errors.SqlWriteError

/**
 * @since 0.1.0
 * @category errors
 */
export type SqlWriteError = errors.SqlWriteError

/**
 * The SQL executor was given a target that is not a `Table` (reason `not_a_table`).
 *
 * @since 0.1.0
 * @category errors
 */
export const NotATable: typeof errors.NotATable = errors.NotATable

/**
 * @since 0.1.0
 * @category errors
 */
export type NotATable = errors.NotATable

/**
 * Rows given to the SQL executor per table (tag `target`: the table name), counted when their
 * batch commits.
 *
 * @since 0.1.0
 * @category metrics
 */
export const dedupeRowsIn: Metric.Metric.Counter<number> = Metric.counter(
  "batchflow_sql_dedupe_rows_in_total",
  {
    description: "Rows of committed SQL batches (per table), before in-batch dedupe by the conflict key.",
    incremental: true
  }
)

/**
 * Rows written per table (tag `target`: the table name) after in-batch dedupe, counted when their
 * batch commits.
 *
 * @since 0.1.0
 * @category metrics
 */
export const dedupeRowsOut: Metric.Metric.Counter<number> = Metric.counter(
  "batchflow_sql_dedupe_rows_out_total",
  {
    description:
      "Rows of committed SQL batches (per table), after in-batch dedupe by the conflict key: rows written.",
    incremental: true
  }
)
