/**
 * A `SqlClient` over a mysql2 pool the user made and owns: `@effect/sql-mysql2` 0.53 only builds
 * clients over pools it creates (and ends). The connection methods are those of its own client
 * (`query` for unprepared statements, `execute` for prepared ones, a pooled connection reserved for
 * transactions); closing the scope releases nothing but the reserved connections: the pool stays
 * open.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import * as SqlClient from "@effect/sql/SqlClient"
import type { Connection } from "@effect/sql/SqlConnection"
import { SqlError } from "@effect/sql/SqlError"
import { makeCompiler } from "@effect/sql-mysql2/MysqlClient"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"

type Callback = (error: unknown, results?: unknown) => void

/** What is used of a mysql2 callback pool and its connections. */
interface CallbackQueryable {
  readonly query: (options: { sql: string; values: ReadonlyArray<unknown> }, callback: Callback) => unknown
  readonly execute: (options: { sql: string; values: ReadonlyArray<unknown> }, callback: Callback) => unknown
}
interface CallbackConnection extends CallbackQueryable {
  readonly release: () => void
}
interface CallbackPool extends CallbackQueryable {
  readonly getConnection: (callback: (error: unknown, connection: CallbackConnection) => void) => void
}

/**
 * mysql2's pools: the callback pool (`mysql2`'s `createPool`) or the promise pool
 * (`mysql2/promise`), which wraps a callback pool as its `pool` property.
 *
 * @internal
 */
export const callbackPoolOf = (pool: object): CallbackPool => {
  const inner = (pool as { readonly pool?: unknown }).pool
  if (
    typeof inner === "object" &&
    inner !== null &&
    typeof (inner as CallbackPool).getConnection === "function"
  ) {
    return inner as CallbackPool
  }
  return pool as CallbackPool
}

const connection = (conn: CallbackQueryable): Connection => {
  const run = (sql: string, values: ReadonlyArray<unknown>, method: "query" | "execute") =>
    Effect.async<unknown, SqlError>((resume) => {
      conn[method]({ sql, values }, (cause, results) => {
        resume(
          cause
            ? Effect.fail(new SqlError({ cause, message: "Failed to execute statement" }))
            : Effect.succeed(results)
        )
      })
    })
  const rows = (sql: string, values: ReadonlyArray<unknown>, method: "query" | "execute") =>
    Effect.map(run(sql, values, method), (results) =>
      Array.isArray(results) ? (results as ReadonlyArray<object>) : []
    )
  return {
    execute: (sql, params, transformRows) =>
      transformRows ? Effect.map(rows(sql, params, "execute"), transformRows) : rows(sql, params, "execute"),
    executeRaw: (sql, params) => run(sql, params, "execute"),
    executeValues: (sql, params) =>
      Effect.map(rows(sql, params, "execute"), (rs) => rs.map((row) => Object.values(row as object))),
    executeUnprepared: (sql, params, transformRows) =>
      transformRows ? Effect.map(rows(sql, params, "query"), transformRows) : rows(sql, params, "query"),
    executeStream: () => Effect.dieMessage("executeStream is not available on a user's mysql2 pool") as never
  }
}

/**
 * A `SqlClient` (dialect mysql) over `pool`, which it never ends.
 *
 * @internal
 */
export const layer = (pool: object): Layer.Layer<SqlClient.SqlClient> => {
  const callbacks = callbackPoolOf(pool)
  const reserve = Effect.acquireRelease(
    Effect.async<CallbackConnection, SqlError>((resume) => {
      callbacks.getConnection((cause, conn) => {
        resume(
          cause
            ? Effect.fail(new SqlError({ cause, message: "Failed to acquire connection" }))
            : Effect.succeed(conn)
        )
      })
    }),
    (conn) => Effect.sync(() => conn.release())
  )
  return Layer.effect(
    SqlClient.SqlClient,
    SqlClient.make({
      acquirer: Effect.succeed(connection(callbacks)),
      transactionAcquirer: Effect.map(reserve, connection),
      compiler: makeCompiler(),
      spanAttributes: [["db.system.name", "mysql"]]
    })
  ).pipe(Layer.provide(Reactivity.layer))
}
