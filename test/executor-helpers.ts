/**
 * Helpers for the executor and flow tests (issue 14): running a flow layer of any requirements in
 * its own scope, and reading from PostgreSQL how the rows of a table were batched (each batch is one
 * transaction, so rows of one batch share `txid_current()`, filled in by a column default).
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { Chunk, Context, Effect, Exit, Fiber, Layer, Scope, Stream } from "effect"
import { BatchFlow, type BatchFlowError } from "effect-batchflow"

export interface Run<A> {
  readonly result: A
  readonly failures: ReadonlyArray<BatchFlowError.BatchFailure>
  readonly stats: BatchFlow.Stats
}

/**
 * Builds `layer` in its own scope, reads its failures from the start, runs `body`, closes the flow
 * (writing everything) and returns the body's result, every `BatchFailure` and the final stats.
 */
export const runLayer = <A, E, R, LE, LR>(
  layer: Layer.Layer<BatchFlow.BatchFlow, LE, LR>,
  body: (flow: BatchFlow.BatchFlow) => Effect.Effect<A, E, R>
): Effect.Effect<Run<A>, E | LE, R | LR> =>
  Effect.gen(function* () {
    const scope = yield* Scope.make()
    const context = yield* Layer.buildWithScope(layer, scope)
    const flow = Context.get(context, BatchFlow.BatchFlow)
    const failures = yield* Effect.fork(Stream.runCollect(flow.failures))
    const result = yield* body(flow).pipe(Effect.onExit(() => Scope.close(scope, Exit.void)))
    const collected = Chunk.toReadonlyArray(yield* Fiber.join(failures))
    const stats = yield* flow.stats
    return { result, failures: collected, stats }
  })

/** `DROP TABLE IF EXISTS` then `CREATE TABLE name (columns)`. */
export const recreateTable = (
  name: string,
  columns: string
): Effect.Effect<void, SqlError, SqlClient.SqlClient> =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* sql.unsafe(`DROP TABLE IF EXISTS ${name}`)
    yield* sql.unsafe(`CREATE TABLE ${name} (${columns})`)
  })

/** The column to add to a PostgreSQL table whose batches `batchSizes` reads. */
export const txColumn = "tx BIGINT NOT NULL DEFAULT txid_current()"

/**
 * The sizes of the batches a PostgreSQL table (with `txColumn`) was written in, in the order of the
 * batches' first `id`.
 */
export const batchSizes = (
  table: string
): Effect.Effect<ReadonlyArray<number>, SqlError, SqlClient.SqlClient> =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.map(
      sql.unsafe<{ readonly n: number | string }>(
        `SELECT COUNT(*) AS n FROM ${table} GROUP BY tx ORDER BY MIN(id)`
      ),
      (rows) => rows.map((row) => Number(row.n))
    )
  )

/** `SELECT COUNT(*)` of a table, as a number. */
export const rowCount = (table: string): Effect.Effect<number, SqlError, SqlClient.SqlClient> =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.map(sql.unsafe<{ readonly n: number | string }>(`SELECT COUNT(*) AS n FROM ${table}`), (rows) =>
      Number(rows[0]!.n)
    )
  )
