/**
 * The types of the Promise facade (`effect-batchflow/promise` re-exports them): the backends, the
 * options and the running flow. Kept apart so that the facade's internals implement them without
 * importing the public module.
 */
import type * as BatchFlow from "../../BatchFlow.js"
import type * as BatchFlowConfig from "../../BatchFlowConfig.js"
import type { BatchFailure, BatchFailureOf } from "../../BatchFlowError.js"
import type * as Target from "../../Target.js"

/**
 * Counters of the flow since it started: see `BatchFlow.Stats`.
 *
 * @since 0.1.0
 * @category models
 */
export type Stats = BatchFlow.Stats

/**
 * The row type of a target: `RowOf<typeof Events>`.
 *
 * @since 0.1.0
 * @category models
 */
export type RowOf<T> = T extends Target.Target<infer A> ? A : never

/**
 * Where the flow writes. A `url`, `filename` or nothing (Redis' default) makes the flow open its own
 * connections and close them on `close`. A `pool`, `database` or `client` of yours is used (or, for
 * Redis, copied) and never closed: it stays yours.
 *
 * - `postgres`: a `url` (`postgres://user:password@host:5432/db`; `maxConnections`, default 10), or
 *   a node-postgres `Pool` as `pool`. Statement options as in `effect-batchflow/Postgres`.
 * - `mysql` (MySQL and MariaDB): a `url` (`mysql://user:password@host:3306/db`), or a mysql2 pool
 *   (`createPool` of `mysql2` or of `mysql2/promise`) as `pool`.
 * - `sqlite`: a `filename` (the flow opens it in WAL mode), or a better-sqlite3 `Database` as
 *   `database` (used as you opened it).
 * - `redis`: a `url` (default `redis://127.0.0.1:6379`) and `db`, or an ioredis client as `client`.
 *   The flow does not write through your client: it opens one connection of its own with your
 *   client's options, because it needs settings a shared client would not have (no re-sending of
 *   unanswered commands after a reconnect, no offline queue: so that every write's outcome is known,
 *   or known to be unknown). Your client is neither used nor closed.
 * - `custom`: your own sink, `write(target, rows)`, called with one target's rows of one flush in
 *   submission order; a rejection fails the batch, which is retried only if the error is
 *   classified as retryable (see `Retry`).
 *
 * @since 0.1.0
 * @category models
 */
export type Backend =
  | PostgresBackend
  | MysqlBackend
  | SqliteBackend
  | RedisBackend
  | {
      readonly type: "custom"
      readonly write: (target: Target.Any, rows: ReadonlyArray<unknown>) => Promise<void>
    }

/**
 * @since 0.1.0
 * @category models
 */
export type PostgresBackend = {
  readonly type: "postgres"
  /** `unnest` (default), `json` or `values`: see `effect-batchflow/Postgres`. */
  readonly pgForm?: "json" | "values" | "unnest" | undefined
  readonly maxParams?: number | undefined
  readonly maxStatementBytes?: number | undefined
} & (
  | { readonly url: string; readonly maxConnections?: number | undefined }
  | {
      /** A node-postgres `Pool` (`new pg.Pool(...)`); never ended by the flow. */
      readonly pool: PgPool
    }
)

/**
 * @since 0.1.0
 * @category models
 */
export type MysqlBackend = {
  readonly type: "mysql"
  readonly maxParams?: number | undefined
  readonly maxStatementBytes?: number | undefined
} & (
  | { readonly url: string; readonly maxConnections?: number | undefined }
  | {
      /** A mysql2 pool (`mysql2`'s or `mysql2/promise`'s `createPool`); never ended by the flow. */
      readonly pool: MysqlPool
    }
)

/**
 * @since 0.1.0
 * @category models
 */
export type SqliteBackend = {
  readonly type: "sqlite"
  readonly maxParams?: number | undefined
  readonly maxStatementBytes?: number | undefined
} & (
  | { readonly filename: string }
  | {
      /** A better-sqlite3 `Database`; never closed by the flow. */
      readonly database: SqliteDatabase
    }
)

/**
 * @since 0.1.0
 * @category models
 */
export type RedisBackend = {
  readonly type: "redis"
  /** Send every batch as MULTI/EXEC. Default false. */
  readonly transaction?: boolean | undefined
  /** Fuse commands where the final state is the same (SET → MSET, …). Default true. */
  readonly fusion?: boolean | undefined
} & (
  | { readonly url?: string | undefined; readonly db?: number | undefined }
  | {
      /** An ioredis client, whose options the flow's own connection copies; never used or closed. */
      readonly client: RedisClientLike
    }
)

/**
 * A node-postgres `Pool`, as far as the facade needs to name it (the driver's types stay optional).
 *
 * @since 0.1.0
 * @category models
 */
export interface PgPool {
  readonly options: object
  readonly connect: (...args: never) => unknown
  readonly query: (...args: never) => unknown
}

/**
 * A mysql2 pool (callback or promise API), as far as the facade needs to name it.
 *
 * @since 0.1.0
 * @category models
 */
export interface MysqlPool {
  readonly getConnection: (...args: never) => unknown
  readonly query: (...args: never) => unknown
}

/**
 * A better-sqlite3 `Database`, as far as the facade needs to name it.
 *
 * @since 0.1.0
 * @category models
 */
export interface SqliteDatabase {
  readonly prepare: (...args: never) => unknown
}

/**
 * An ioredis client, as far as the facade needs to name it.
 *
 * @since 0.1.0
 * @category models
 */
export interface RedisClientLike {
  readonly options: object
}

/**
 * The flow's options (`BatchFlowConfig.Options`: bufferSize, flushSize, flushInterval, concurrency,
 * retry, timeout, closeTimeout, submitTimeout, …; durations as `"100 millis"`, `"5 seconds"` or a
 * number of milliseconds) and the backend.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options extends BatchFlowConfig.Options {
  readonly backend: Backend
}

/**
 * Called with every batch that could not be written (its rows, attempts, reason, outcome). It may
 * return a Promise; a callback that throws or rejects is logged and changes nothing else.
 *
 * @since 0.1.0
 * @category models
 */
export type FailureCallback = (failure: BatchFailure) => void | Promise<void>

/**
 * A running flow. Every Promise rejects with one of the library's error classes (exported here):
 * `InvalidRow` (naming the field), `BatchFlowClosed`, `BufferFull` (after `submitTimeout`) or, for
 * `write`, `BatchFailure`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Flow {
  /**
   * Validates the row and enqueues it; resolves once it is accepted. When the buffer is full, waits
   * for room (at most `submitTimeout`, then `BufferFull`). Costs no Effect run when there is room:
   * the Promise it returns is already resolved.
   */
  readonly submit: <A>(target: Target.Target<A>, row: A) => Promise<void>
  /** Accepts the row and resolves `true` if there is room now; resolves `false` (nothing accepted) when full. */
  readonly trySubmit: <A>(target: Target.Target<A>, row: A) => Promise<boolean>
  /**
   * Synchronous: accepts the row and returns `true` if there is room now; returns `false` when the
   * buffer is full or the flow is closed. Throws `InvalidRow`.
   */
  readonly unsafeOffer: <A>(target: Target.Target<A>, row: A) => boolean
  /** Validates every row first (an invalid one rejects the call with its `index`), then enqueues them in order. */
  readonly submitAll: <A>(target: Target.Target<A>, rows: Iterable<A>) => Promise<void>
  /** Like `submit`, then resolves when the row's batch is committed; rejects with its `BatchFailure` if it is not. */
  readonly write: <A>(target: Target.Target<A>, row: A) => Promise<void>
  /**
   * Like `submitAll`, then resolves once every one of its rows is committed or reported, with the
   * distinct `BatchFailure`s of its rows (empty: all committed).
   */
  readonly writeAll: <A>(
    target: Target.Target<A>,
    rows: Iterable<A>
  ) => Promise<ReadonlyArray<BatchFailureOf<A>>>
  /** Resolves when everything submitted before the call is written (committed or reported as failed). */
  readonly flush: () => Promise<void>
  /**
   * Stops intake (later submits reject with `BatchFlowClosed`), writes every buffered row, waits for
   * in-flight writes (at most `closeTimeout`), for the `onFailure` callbacks of the last failures
   * (at most 5 s more), then closes the connections the flow opened. Idempotent: every call returns
   * the same Promise.
   */
  readonly close: () => Promise<void>
  /**
   * Registers a callback for every `BatchFailure` and returns the function that unregisters it.
   * Failures reported before the first registration are kept (up to `failureBufferSize`) for it.
   */
  readonly onFailure: (callback: FailureCallback) => () => void
  /** The flow's counters, synchronously. */
  readonly stats: () => Stats
}
