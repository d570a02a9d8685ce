/**
 * PostgreSQL: a BatchFlow that writes `Table`s through `@effect/sql-pg`'s client. The user provides
 * the client layer (`PgClient.layer`), so connection settings, pool size and TLS stay theirs.
 *
 * Statements (table `users`, columns `id, name`, key `id`):
 *
 * - `Conflict.none`: `INSERT INTO "users" ("id", "name") SELECT "id", "name" FROM json_populate_recordset(NULL::"users", $1::json)`
 * - `Conflict.ignore`: the same `… ON CONFLICT ("id") DO NOTHING` (no target without a key)
 * - `Conflict.replace`: `… ON CONFLICT ("id") DO UPDATE SET "name" = EXCLUDED."name"` (every non-key column)
 * - `Conflict.update({ target, set })`: `… ON CONFLICT (target) DO UPDATE SET c = EXCLUDED.c` for the `set` columns
 *
 * By default (`pgForm: "unnest"`) each column of the batch is one text array literal built by the
 * executor, read by `unnest($1::bigint[], $2::text[], …)` with the column types from the catalog
 * (read once per table): in the bench 0.79–0.81× of raw `unnest` against 0.60–0.64× for `json` in
 * the same runs, and about 0.9 µs/row less PostgreSQL CPU. Tables with an array column use `json`.
 * `pgForm: "json"` sends the whole batch as one JSON parameter (`json_populate_recordset`: one short
 * text whatever the batch size, the table's own types convert the values, what `Sql.preview`
 * shows); `pgForm: "values"` the classic multi-row `VALUES ($1, $2), …` list. See the SQL guide.
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
import { classifyPg } from "./internal/sql/rules.js"
import type * as Retry from "./Retry.js"
import type * as Sql from "./Sql.js"

/**
 * Statement options for PostgreSQL.
 *
 * @since 0.1.0
 * @category models
 */
export interface StatementOptions {
  /** Default `json`; `values` or `unnest`: see the module description. */
  readonly pgForm?: Sql.PgForm | undefined
  /** For `pgForm: "values"`: bind parameters per statement (default and maximum 65,535). */
  readonly maxParams?: number | undefined
  /** Estimated bytes per statement, default 64 MiB; bigger batches are split, in one transaction. */
  readonly maxStatementBytes?: number | undefined
}

/**
 * Flow options (`BatchFlowConfig`) and statement options.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options extends BatchFlowConfig.Options, StatementOptions {}

/**
 * A BatchFlow writing `Table`s to PostgreSQL. Needs a `SqlClient` whose dialect is pg (e.g.
 * `PgClient.layer`); fails with `UnsupportedDialect` otherwise.
 *
 * @example
 * ```ts
 * import { PgClient } from "@effect/sql-pg"
 * import { Layer, Redacted } from "effect"
 * import * as Postgres from "effect-batchflow/Postgres"
 *
 * const FlowLive = Postgres.layer({ flushSize: 500, concurrency: 4 }).pipe(
 *   Layer.provide(PgClient.layer({ url: Redacted.make("postgres://postgres@127.0.0.1:5432/test") }))
 * )
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (
  options: Options = {}
): Layer.Layer<BatchFlow.BatchFlow, BatchFlowConfigError | Sql.UnsupportedDialect, SqlClient.SqlClient> =>
  internal.layer(options, "pg")

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
> => internal.layerConfig(statement, config, "pg")

/**
 * The executor of a flow that writes every `Table` through the `SqlClient` (whose dialect must be
 * pg): give it to `BatchFlow.layer({ executors: [...] })`, beside executors of other backends.
 *
 * @since 0.1.0
 * @category executors
 */
export const executor = (
  options: StatementOptions = {}
): BatchExecutor.Executor<Sql.UnsupportedDialect, SqlClient.SqlClient> => internal.executor(options, "pg")

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
  internal.layerExecutor(options, "pg")

/**
 * The executor alone, as an effect (for calling `execute` yourself, e.g. in tests).
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeExecutor = (
  options: StatementOptions = {}
): Effect.Effect<BatchExecutor.BatchExecutor, Sql.UnsupportedDialect, SqlClient.SqlClient> =>
  internal.make(options, "pg")

/**
 * How a SQLSTATE is treated: e.g. `40P01` → retryable `deadlock`, `23502` → row-level `not_null`.
 *
 * @since 0.1.0
 * @category classification
 */
export const classifySqlState: (sqlState: string) => Retry.Classification = classifyPg
