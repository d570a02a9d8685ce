/**
 * effect-batchflow for code that does not use Effect: `createBatchFlow` starts a flow on a
 * database and returns an object whose methods return Promises. The rows, the targets, the
 * configuration and the guarantees are those of the Effect API (`BatchFlow`); the flow's
 * resources (its engine, and the connections it opened) are released by `close`.
 *
 * Everything a program needs is exported here: the targets (`Table`, `Target`, `Conflict`, the
 * Redis targets as `Redis`), `Schema` (from effect) for their columns, and the error classes the
 * Promises reject with. Only the backend's driver is imported on top, and only when you hand over
 * a pool or a client of your own.
 *
 * @example
 * ```ts
 * import { Conflict, createBatchFlow, Schema, Table } from "effect-batchflow/promise"
 *
 * const Events = Table.make("events", {
 *   columns: Schema.Struct({ id: Schema.Number, kind: Schema.String }),
 *   conflict: Conflict.ignore,
 *   key: ["id"]
 * })
 * const flow = await createBatchFlow({ backend: { type: "sqlite", filename: "events.db" } })
 * await flow.submit(Events, { id: 1, kind: "click" })
 * await flow.close()
 * ```
 *
 * @since 0.1.0
 */
import type { Flow, Options } from "./internal/promise/api.js"
import { layerOf } from "./internal/promise/backends.js"
import * as internal from "./internal/promise/flow.js"

export * as Schema from "effect/Schema"
export {
  BatchFailure,
  BatchFlowClosed,
  BatchFlowConfigError,
  BufferFull,
  InvalidRow,
  isBatchFlowError
} from "./BatchFlowError.js"
export * as Coalesce from "./Coalesce.js"
export * as Conflict from "./Conflict.js"
export type {
  Backend,
  FailureCallback,
  Flow,
  MysqlBackend,
  MysqlPool,
  Options,
  PgPool,
  PostgresBackend,
  RedisBackend,
  RedisClientLike,
  RowOf,
  SqliteBackend,
  SqliteDatabase,
  Stats
} from "./internal/promise/api.js"
export * as Redis from "./internal/promise/redisTargets.js"
export * as Table from "./Table.js"
export * as Target from "./Target.js"

/**
 * Starts a flow. Rejects with `BatchFlowConfigError` for an invalid option, or with the driver's
 * error when the database cannot be reached.
 *
 * @since 0.1.0
 * @category constructors
 */
export const createBatchFlow = async (options: Options): Promise<Flow> => {
  const { backend, ...flowOptions } = options
  return internal.make(await layerOf(backend, flowOptions))
}
