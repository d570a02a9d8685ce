/**
 * The direct SQLite path (`Sqlite.layer({ direct: true })`): statements run on the better-sqlite3
 * `Database` behind the app's `@effect/sql-sqlite-node` client, synchronously, without the client's
 * machinery per statement (its semaphore, statement cache lookup, an Effect per statement, the
 * spread of every parameter as an argument). Each statement text is prepared once (a small cache by
 * text) and its values are bound as one array (`statement.run(params)`).
 *
 * The client (0.53) does not expose its `Database`. It is found once, when the executor is built: on
 * the reserved connection, `executeUnprepared` calls `db.prepare(text)` as soon as it is called
 * (before its effect runs), so for that one synchronous call `Database.prototype.prepare` is wrapped
 * to note its receiver, then put back. Nothing else can run in between (one JavaScript turn), the
 * prepared `SELECT 1` is never executed, and the receiver is checked (an open better-sqlite3
 * `Database` of the client's file). When any of that fails (another driver copy, a client built
 * differently, a later version that prepares elsewhere) the executor says so and uses the client
 * path; `test/sql-sqlite-direct.test.ts` fails loudly when the capture stops working.
 *
 * @internal
 */
import type * as SqlClient from "@effect/sql/SqlClient"
import { SqlError } from "@effect/sql/SqlError"
import * as Effect from "effect/Effect"
import { driverOf } from "./driver.js"

/** The little of better-sqlite3 the direct path uses (the package ships no types). */
export interface RawStatement {
  readonly run: (params?: ReadonlyArray<unknown>) => unknown
}

/** @internal */
export interface RawDatabase {
  readonly open: boolean
  readonly inTransaction: boolean
  readonly name: string
  readonly prepare: (source: string) => RawStatement
}

type DatabaseClass = { readonly prototype: { prepare: (this: RawDatabase, source: string) => RawStatement } }

/** better-sqlite3 as @effect/sql-sqlite-node resolves it; `undefined` when it cannot be loaded. */
const driverClass = (): DatabaseClass | undefined => {
  const Database = driverOf("@effect/sql-sqlite-node", "better-sqlite3")
  return typeof Database === "function" && typeof (Database as DatabaseClass).prototype.prepare === "function"
    ? (Database as DatabaseClass)
    : undefined
}

/** Why the direct path is not available, or the database it writes to. */
export type Found =
  | { readonly _tag: "Found"; readonly db: RawDatabase }
  | { readonly _tag: "NotFound"; readonly reason: string }

/**
 * The better-sqlite3 `Database` of a `@effect/sql-sqlite-node` client, found on its reserved
 * connection (see the module comment).
 *
 * @internal
 */
export const databaseOf = (sql: SqlClient.SqlClient): Effect.Effect<Found> =>
  Effect.scoped(
    Effect.map(sql.reserve, (conn): Found => {
      const Database = driverClass()
      if (Database === undefined) return { _tag: "NotFound", reason: "better-sqlite3 cannot be loaded" }
      const proto = Database.prototype
      const prepare = proto.prepare
      let seen: unknown
      proto.prepare = function (this: RawDatabase, source: string) {
        seen = this
        return prepare.call(this, source)
      }
      try {
        conn.executeUnprepared("SELECT 1", [], undefined)
      } catch {
        // nothing noted: reported below
      } finally {
        proto.prepare = prepare
      }
      if (!(seen instanceof (Database as unknown as new () => object))) {
        return { _tag: "NotFound", reason: "the client did not prepare on a better-sqlite3 Database" }
      }
      const db = seen as RawDatabase
      const filename = (sql as { readonly config?: { readonly filename?: unknown } }).config?.filename
      if (!db.open || (typeof filename === "string" && db.name !== filename)) {
        return { _tag: "NotFound", reason: "the Database found is not the client's open file" }
      }
      return { _tag: "Found", db }
    })
  ).pipe(Effect.catchAllCause(() => Effect.succeed<Found>({ _tag: "NotFound", reason: "no connection" })))

/** Distinct statement texts kept prepared (a batch size is one text; a partial batch another). */
const cacheSize = 256

/**
 * Runs statements on the database: prepared once per text, values bound as one array; several in one
 * transaction (BEGIN … COMMIT; after an error, ROLLBACK when a transaction is still open, and the
 * first error is the one returned). A driver error comes back as the `SqlError` the client would
 * have made of it ("Failed to execute statement"), so it is described and classified alike.
 *
 * @internal
 */
export interface DirectRunner {
  /** Whether a transaction is open on the connection (someone else's: ours never outlive `run`). */
  readonly inTransaction: () => boolean
  /** `undefined` when done, the error otherwise. Synchronous: SQLite runs in this thread. */
  readonly run: (
    statements: ReadonlyArray<{ readonly sql: string; readonly params: ReadonlyArray<unknown> }>
  ) => SqlError | undefined
}

/** @internal */
export const runner = (db: RawDatabase): DirectRunner => {
  const cache = new Map<string, RawStatement>()
  const prepared = (text: string): RawStatement => {
    let statement = cache.get(text)
    if (statement === undefined) {
      statement = db.prepare(text)
      if (cache.size >= cacheSize) cache.delete(cache.keys().next().value as string)
      cache.set(text, statement)
    }
    return statement
  }
  const fail = (cause: unknown) => new SqlError({ cause, message: "Failed to execute statement" })
  return {
    inTransaction: () => db.inTransaction,
    run: (statements) => {
      if (statements.length === 1) {
        const statement = statements[0]!
        try {
          prepared(statement.sql).run(statement.params)
          return undefined
        } catch (cause) {
          return fail(cause)
        }
      }
      try {
        prepared("BEGIN").run()
      } catch (cause) {
        return fail(cause)
      }
      try {
        for (const statement of statements) prepared(statement.sql).run(statement.params)
        prepared("COMMIT").run()
        return undefined
      } catch (cause) {
        // A failed COMMIT (SQLITE_BUSY) leaves the transaction open: rolled back, nothing was written.
        try {
          if (db.inTransaction) prepared("ROLLBACK").run()
        } catch {
          // the first error is the one that counts; a connection that ends rolls back too
        }
        return fail(cause)
      }
    }
  }
}
