/**
 * SQLite: a BatchFlow that writes `Table`s through `@effect/sql-sqlite-node`'s client
 * (better-sqlite3). The user provides the client layer (`SqliteClient.layer({ filename })`).
 *
 * Statements (table `users`, columns `id, name`, key `id`):
 *
 * - `Conflict.none`: `INSERT INTO "users" ("id", "name") VALUES (?, ?), (?, ?)`
 * - `Conflict.ignore`: `INSERT OR IGNORE INTO "users" …`
 * - `Conflict.replace`: `INSERT OR REPLACE INTO "users" …`
 * - `Conflict.update({ target, set })`: `INSERT INTO "users" … ON CONFLICT ("id") DO UPDATE SET "name" = excluded."name"`
 *   (SQLite ≥ 3.24)
 *
 * One multi-row statement per batch (measured ≈1.5× a prepared per-row insert); batches above
 * SQLite's 32,766 bind parameters are split into several statements in one transaction. Booleans are
 * written as 1/0, dates as ISO-8601 text, bytes as BLOBs. better-sqlite3 is synchronous: each
 * statement blocks the event loop while it runs, and a statement waiting for a lock held by another
 * connection blocks it for up to the busy timeout (5 s by default) before failing with `SQLITE_BUSY`
 * (retryable, reason `busy`).
 *
 * With `direct: true` the statements run on the client's better-sqlite3 `Database` directly (see
 * `StatementOptions.direct`).
 *
 * @since 0.1.0
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import type * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import type * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import type * as BatchExecutor from "./BatchExecutor.js"
import type * as BatchFlow from "./BatchFlow.js"
import * as BatchFlowConfig from "./BatchFlowConfig.js"
import type { BatchFlowConfigError } from "./BatchFlowError.js"
import * as internal from "./internal/sql/executor.js"
import { classifySqlite } from "./internal/sql/rules.js"
import type * as Retry from "./Retry.js"
import type * as Sql from "./Sql.js"

/**
 * Statement options for SQLite.
 *
 * @since 0.1.0
 * @category models
 */
export interface StatementOptions {
  /** Bind parameters per statement (default and maximum 32,766). */
  readonly maxParams?: number | undefined
  /** Estimated bytes per statement; default: no limit. Bigger batches are split, in one transaction. */
  readonly maxStatementBytes?: number | undefined
  /**
   * Run the statements on the client's better-sqlite3 `Database` itself (default `false`: through
   * the client). Each statement text is prepared once and its values bound as one array, with none of
   * the client's work per statement (its lock, statement cache, an effect per statement): the
   * executor alone measured 2.09 → 1.54 µs/row of Node CPU (raw better-sqlite3 1.15). The same
   * statements, errors, classification, metrics and outcomes as through the client.
   *
   * The client's lock is not taken: a batch runs at once, in one synchronous call, between the app's
   * own statements. While a transaction is open on the connection (`sql.withTransaction`), a batch
   * would join it, so then it waits for the lock through the client as usual. A `sql.reserve`d
   * connection without a transaction does not hold batches back. Only for an
   * `@effect/sql-sqlite-node` client (the `Database` is found once when the executor is built);
   * with another client, or when it cannot be found, a warning is logged and the client path used.
   */
  readonly direct?: boolean | undefined
}

/**
 * Flow options (`BatchFlowConfig`) and statement options.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options extends BatchFlowConfig.Options, StatementOptions {}

/**
 * A BatchFlow writing `Table`s to SQLite. Needs a `SqlClient` whose dialect is sqlite (e.g.
 * `SqliteClient.layer`); fails with `UnsupportedDialect` otherwise.
 *
 * @example
 * ```ts
 * import { SqliteClient } from "@effect/sql-sqlite-node"
 * import { Layer } from "effect"
 * import * as Sqlite from "effect-batchflow/Sqlite"
 *
 * const FlowLive = Sqlite.layer({ flushSize: 500 }).pipe(
 *   Layer.provide(SqliteClient.layer({ filename: "events.db" }))
 * )
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: Options = {}
): Layer.Layer<BatchFlow.BatchFlow, BatchFlowConfigError | Sql.UnsupportedDialect, SqlClient.SqlClient> =>
  internal.layer(options, "sqlite")

/**
 * Like `layer`, with the flow options read from Effect `Config` (default: the `BATCHFLOW_*`
 * environment variables).
 *
 * @since 0.1.0
 * @category layers
 */
export const layerConfig = (
  statement: StatementOptions = {},
  config: Config.Config<BatchFlowConfig.Options> = BatchFlowConfig.config
): Layer.Layer<
  BatchFlow.BatchFlow,
  BatchFlowConfigError | ConfigError.ConfigError | Sql.UnsupportedDialect,
  SqlClient.SqlClient
> => internal.layerConfig(statement, config, "sqlite")

/**
 * The executor of a flow that writes every `Table` through the `SqlClient` (whose dialect must be
 * sqlite): give it to `BatchFlow.layer({ executors: [...] })`, beside executors of other backends.
 *
 * @since 0.1.0
 * @category executors
 */
export const executor = (
  options: StatementOptions = {}
): BatchExecutor.Executor<Sql.UnsupportedDialect, SqlClient.SqlClient> => internal.executor(options, "sqlite")

/**
 * The executor alone, as the `BatchExecutor` service.
 *
 * @deprecated Give the flow `executors: [executor(options)]` instead.
 * @since 0.1.0
 * @category layers
 */
export const layerExecutor = (
  options: StatementOptions = {}
): Layer.Layer<BatchExecutor.BatchExecutor, Sql.UnsupportedDialect, SqlClient.SqlClient> =>
  internal.layerExecutor(options, "sqlite")

/**
 * The executor alone, as an effect (for calling `execute` yourself, e.g. in tests).
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeExecutor = (
  options: StatementOptions = {}
): Effect.Effect<BatchExecutor.BatchExecutor, Sql.UnsupportedDialect, SqlClient.SqlClient> =>
  internal.make(options, "sqlite")

/**
 * How a SQLite result code is treated: e.g. `SQLITE_BUSY` → retryable `busy`,
 * `SQLITE_CONSTRAINT_NOTNULL` → row-level `not_null`.
 *
 * @since 0.1.0
 * @category classification
 */
export const classifyCode = (code: string, message = ""): Retry.Classification =>
  classifySqlite(code, message)
