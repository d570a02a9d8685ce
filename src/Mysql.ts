/**
 * MySQL and MariaDB: a BatchFlow that writes `Table`s through `@effect/sql-mysql2`'s client. The user
 * provides the client layer (`MysqlClient.layer`).
 *
 * Statements (table `users`, columns `id, name`, key `id`):
 *
 * - `Conflict.none`: ``INSERT INTO `users` (`id`, `name`) VALUES (?, ?), (?, ?)``
 * - `Conflict.ignore`: ``INSERT IGNORE INTO `users` …``
 * - `Conflict.replace`: ``REPLACE INTO `users` …`` (delete + insert)
 * - `Conflict.update({ target, set })`: ``INSERT INTO `users` … ON DUPLICATE KEY UPDATE `name` = VALUES(`name`)``
 *   (the form both MariaDB and MySQL 8 accept; MySQL ≥ 8.0.20 warns that `VALUES()` is deprecated)
 *
 * Statements run through mysql2's `query()`, which formats values into the text on the client:
 * measured faster than server-prepared `execute()`, and it leaves no prepared statement per distinct
 * batch size on the server. If the server runs with `NO_BACKSLASH_ESCAPES` (where that formatting is
 * not safe), the executor detects it and uses server-prepared statements instead.
 *
 * With `direct: true` each batch runs on a connection of the client's mysql2 pool directly (see
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
import { classifyMysql } from "./internal/sql/rules.js"
import type * as Retry from "./Retry.js"
import type * as Sql from "./Sql.js"

/**
 * Statement options for MySQL / MariaDB.
 *
 * @since 0.1.0
 * @category models
 */
export interface StatementOptions {
  /** Bind parameters per statement (default and maximum 65,535). */
  readonly maxParams?: number | undefined
  /**
   * Estimated bytes per statement, default 4 MiB (below MariaDB's default 16 MiB
   * `max_allowed_packet`); bigger batches are split, in one transaction.
   */
  readonly maxStatementBytes?: number | undefined
  /**
   * Run each batch on a connection of the mysql2 pool behind the `@effect/sql-mysql2` client
   * directly, with mysql2's own callbacks (default `true`; `false` sends every statement through the
   * client): less Node CPU per batch (0.90 and 0.95× of raw `query()` against 0.80–0.84× through the
   * client, on 2026-12-07), with the same
   * statements, errors, classification, metrics and outcomes as through the client. The connection is
   * taken first (a failed connect is known not sent), statements of a split batch run in one
   * transaction, and the connection goes back to the pool after the last reply (also when the
   * attempt was abandoned meanwhile). The first batch goes through the client, which detects the
   * server's modes. Only for an `@effect/sql-mysql2` client (the pool is found once when the
   * executor is built); with another client, or when it cannot be found, a warning is logged and the
   * client path used.
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
 * A BatchFlow writing `Table`s to MySQL or MariaDB. Needs a `SqlClient` whose dialect is mysql
 * (e.g. `MysqlClient.layer`); fails with `UnsupportedDialect` otherwise.
 *
 * @example
 * ```ts
 * import { MysqlClient } from "@effect/sql-mysql2"
 * import { Layer } from "effect"
 * import * as Mysql from "effect-batchflow/Mysql"
 *
 * const FlowLive = Mysql.layer({ flushSize: 500, concurrency: 4 }).pipe(
 *   Layer.provide(MysqlClient.layer({ host: "127.0.0.1", username: "root", database: "test" }))
 * )
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: Options = {}
): Layer.Layer<BatchFlow.BatchFlow, BatchFlowConfigError | Sql.UnsupportedDialect, SqlClient.SqlClient> =>
  internal.layer(options, "mysql")

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
> => internal.layerConfig(statement, config, "mysql")

/**
 * The executor of a flow that writes every `Table` through the `SqlClient` (whose dialect must be
 * mysql): give it to `BatchFlow.layer({ executors: [...] })`, beside executors of other backends.
 *
 * @since 0.1.0
 * @category executors
 */
export const executor = (
  options: StatementOptions = {}
): BatchExecutor.Executor<Sql.UnsupportedDialect, SqlClient.SqlClient> => internal.executor(options, "mysql")

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
  internal.layerExecutor(options, "mysql")

/**
 * The executor alone, as an effect (for calling `execute` yourself, e.g. in tests).
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeExecutor = (
  options: StatementOptions = {}
): Effect.Effect<BatchExecutor.BatchExecutor, Sql.UnsupportedDialect, SqlClient.SqlClient> =>
  internal.make(options, "mysql")

/**
 * How a server error number (or a mysql2 client code) is treated: e.g. `1213` → retryable
 * `deadlock`, `1406` → row-level `value_too_long`.
 *
 * @since 0.1.0
 * @category classification
 */
export const classifyErrno = (errno: number, code?: string): Retry.Classification =>
  classifyMysql(errno, code)
