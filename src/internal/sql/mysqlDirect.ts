/**
 * The direct MySQL/MariaDB path (the default; `Mysql.layer({ direct: false })` turns it off): each batch runs on a connection
 * of the mysql2 pool behind the app's `@effect/sql-mysql2` client, with mysql2's own callbacks: one
 * Effect per batch instead of the client's per batch (a Scope, an `acquireRelease` for the
 * connection, an Effect per statement with its `map`). The statements, their texts and values, and
 * the order of things are those of the client path: the connection is taken first (a failed
 * handshake is a failure to acquire, known not sent), then each statement is sent with
 * `connection.query({ sql, values })` (`execute` when the server runs with `NO_BACKSLASH_ESCAPES`),
 * several in `BEGIN` … `COMMIT` (after an error `ROLLBACK`, the first error being the one returned),
 * and the connection goes back to the pool when the last callback has come, also when the fiber was
 * interrupted meanwhile (the client path releases it at once, under a statement still running).
 * Driver errors become the `SqlError`s the client makes of them ("Failed to acquire connection",
 * "Failed to execute statement", the driver error as `cause`), so they are described and classified
 * alike.
 *
 * The client (0.53) does not expose its pool. It is found once, when the executor is built: the
 * connection `sql.reserve` gives holds the mysql2 `PoolConnection` (`conn`), whose `_pool` is the
 * client's pool. Both are checked (a `PoolConnection` and a `Pool` of the mysql2 the client loads);
 * when that fails (another client version, another driver copy) the executor says so and uses the
 * client path; `test/sql-mysql-direct.test.ts` fails loudly when the lookup stops working.
 *
 * @internal
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import { SqlError } from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"
import { driverOf } from "./driver.js"

type Callback = (error: unknown, results?: unknown) => void

/** The little of a mysql2 pool connection the direct path uses. */
export interface RawConnection {
  readonly query: (
    options: { readonly sql: string; readonly values: ReadonlyArray<unknown> },
    cb: Callback
  ) => unknown
  readonly execute: (
    options: { readonly sql: string; readonly values: ReadonlyArray<unknown> },
    cb: Callback
  ) => unknown
  readonly release: () => void
}

/** The little of a mysql2 pool the direct path uses. */
export interface RawPool {
  readonly getConnection: (cb: (error: unknown, conn?: RawConnection) => void) => void
}

type Classes = {
  readonly Pool: new (...args: never) => object
  readonly PoolConnection: new (...args: never) => object
}

/** mysql2's classes as @effect/sql-mysql2 resolves them; `undefined` when they cannot be loaded. */
const driverClasses = (): Classes | undefined => {
  const mysql2 = driverOf("@effect/sql-mysql2", "mysql2") as Partial<Classes> | undefined
  return typeof mysql2?.Pool === "function" && typeof mysql2.PoolConnection === "function"
    ? (mysql2 as Classes)
    : undefined
}

/** Why the direct path is not available, or the pool it takes connections from. */
export type Found =
  | { readonly _tag: "Found"; readonly pool: RawPool }
  | { readonly _tag: "NotFound"; readonly reason: string }

/**
 * The mysql2 pool of a `@effect/sql-mysql2` client, found on its reserved connection (see the module
 * comment).
 *
 * @internal
 */
export const poolOf = (sql: SqlClient.SqlClient): Effect.Effect<Found> =>
  Effect.scoped(
    Effect.map(sql.reserve, (conn): Found => {
      const classes = driverClasses()
      if (classes === undefined) return { _tag: "NotFound", reason: "mysql2 cannot be loaded" }
      const raw = (conn as { readonly conn?: unknown }).conn
      if (!(raw instanceof classes.PoolConnection)) {
        return { _tag: "NotFound", reason: "the reserved connection holds no mysql2 PoolConnection" }
      }
      const pool = (raw as { readonly _pool?: unknown })._pool
      if (!(pool instanceof classes.Pool) || typeof (pool as Partial<RawPool>).getConnection !== "function") {
        return { _tag: "NotFound", reason: "the connection's pool is not a mysql2 Pool" }
      }
      return { _tag: "Found", pool: pool as RawPool }
    })
  ).pipe(Effect.catchAllCause(() => Effect.succeed<Found>({ _tag: "NotFound", reason: "no connection" })))

/** One statement of a batch: its text made when it is sent (the deadline is what is left then). */
export interface DirectStatement {
  readonly text: () => string
  readonly params: ReadonlyArray<unknown>
}

/** How the server is detected when it is not known yet: a query, and what its rows say. */
export interface Detect<S> {
  readonly sql: string
  readonly read: (rows: unknown) => S
}

/**
 * Runs a batch's statements on one connection of the pool: taken first, then (when the server is
 * not known yet) the detection query, then the statement, or several in a transaction, then
 * released.
 *
 * @internal
 */
export const run = <S extends { readonly prepared: boolean }>(
  pool: RawPool,
  known: S | undefined,
  detect: Detect<S>,
  statementsOf: (server: S) => ReadonlyArray<DirectStatement>
): Effect.Effect<void, SqlError> =>
  Effect.async<void, SqlError>((resume) => {
    pool.getConnection((acquireError, conn) => {
      if (acquireError || conn === undefined) {
        resume(
          Effect.fail(
            new SqlError({
              cause: acquireError ?? new Error("no connection"),
              message: "Failed to acquire connection"
            })
          )
        )
        return
      }
      const done = (error: unknown) => {
        conn.release()
        resume(
          error === undefined
            ? Effect.void
            : Effect.fail(new SqlError({ cause: error, message: "Failed to execute statement" }))
        )
      }
      const control = (sql: string, cb: Callback) => {
        try {
          conn.query({ sql, values: [] }, cb)
        } catch (error) {
          cb(error)
        }
      }
      if (known !== undefined) return write(conn, known, done, control)
      control(detect.sql, (error, rows) => {
        if (error) return done(error)
        let server: S
        try {
          server = detect.read(rows)
        } catch (readError) {
          return done(readError)
        }
        write(conn, server, done, control)
      })
    })
    const write = (
      conn: RawConnection,
      server: S,
      done: (error: unknown) => void,
      control: (sql: string, cb: Callback) => void
    ) => {
      const statements = statementsOf(server)
      const prepared = server.prepared
      const send = (statement: DirectStatement, cb: Callback) => {
        try {
          const options = { sql: statement.text(), values: statement.params }
          if (prepared) conn.execute(options, cb)
          else conn.query(options, cb)
        } catch (error) {
          cb(error)
        }
      }
      if (statements.length === 1) {
        send(statements[0]!, (error) => done(error || undefined))
        return
      }
      const fail = (error: unknown) => control("ROLLBACK", () => done(error))
      control("BEGIN", (beginError) => {
        if (beginError) return fail(beginError)
        let i = 0
        const next = (error: unknown) => {
          if (error) return fail(error)
          if (i < statements.length) return send(statements[i++]!, next)
          control("COMMIT", (commitError) => (commitError ? fail(commitError) : done(undefined)))
        }
        next(undefined)
      })
    }
  })
