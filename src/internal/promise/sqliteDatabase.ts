/**
 * A `SqlClient` over a better-sqlite3 `Database` the user opened and owns: `@effect/sql-sqlite-node`
 * 0.53 only builds clients over databases it opens (and closes). As in its own client, one
 * connection behind a lock of one permit (statements and transactions take turns) and prepared
 * statements cached by text; closing the scope leaves the database open and its settings (journal
 * mode, busy timeout) as the user set them.
 */
import * as Reactivity from "@effect/experimental/Reactivity"
import * as SqlClient from "@effect/sql/SqlClient"
import type { Connection } from "@effect/sql/SqlConnection"
import { SqlError } from "@effect/sql/SqlError"
import * as Statement from "@effect/sql/Statement"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"

/** What is used of a better-sqlite3 statement. */
interface SqliteStatement {
  readonly reader: boolean
  readonly all: (...params: ReadonlyArray<unknown>) => ReadonlyArray<unknown>
  readonly run: (...params: ReadonlyArray<unknown>) => unknown
  readonly raw: (toggle?: boolean) => unknown
}

/** What is used of a better-sqlite3 `Database`. */
interface SqliteDatabase {
  readonly prepare: (sql: string) => SqliteStatement
}

/** Prepared statements kept per text; past this many the cache starts over. */
const cacheSize = 200

const connection = (db: SqliteDatabase): Connection => {
  const cache = new Map<string, SqliteStatement>()
  const prepared = (sql: string): SqliteStatement => {
    let statement = cache.get(sql)
    if (statement === undefined) {
      if (cache.size >= cacheSize) cache.clear()
      statement = db.prepare(sql)
      cache.set(sql, statement)
    }
    return statement
  }
  const run = (
    prepare: (sql: string) => SqliteStatement,
    sql: string,
    params: ReadonlyArray<unknown>,
    raw: boolean
  ): Effect.Effect<ReadonlyArray<object>, SqlError> =>
    Effect.try({
      try: () => {
        const statement = prepare(sql)
        if (statement.reader) return statement.all(...params) as ReadonlyArray<object>
        const result = statement.run(...params)
        return raw ? (result as ReadonlyArray<object>) : []
      },
      catch: (cause) => new SqlError({ cause, message: "Failed to execute statement" })
    })
  return {
    execute: (sql, params, transformRows) =>
      transformRows
        ? Effect.map(run(prepared, sql, params, false), transformRows)
        : run(prepared, sql, params, false),
    executeRaw: (sql, params) => run(prepared, sql, params, true),
    executeValues: (sql, params) =>
      Effect.try({
        try: () => {
          const statement = prepared(sql)
          if (!statement.reader) {
            statement.run(...params)
            return []
          }
          statement.raw(true)
          try {
            return statement.all(...params) as ReadonlyArray<ReadonlyArray<unknown>>
          } finally {
            statement.raw(false)
          }
        },
        catch: (cause) => new SqlError({ cause, message: "Failed to execute statement" })
      }),
    executeUnprepared: (sql, params, transformRows) => {
      const effect = run((text) => db.prepare(text), sql, params, false)
      return transformRows ? Effect.map(effect, transformRows) : effect
    },
    executeStream: () =>
      Effect.dieMessage("executeStream is not available on a user's SQLite database") as never
  }
}

/**
 * A `SqlClient` (dialect sqlite) over `db`, which it never closes.
 *
 * @internal
 */
export const layer = (db: object): Layer.Layer<SqlClient.SqlClient> =>
  Layer.effect(
    SqlClient.SqlClient,
    Effect.gen(function* () {
      const conn = connection(db as SqliteDatabase)
      const lock = yield* Effect.makeSemaphore(1)
      return yield* SqlClient.make({
        acquirer: lock.withPermits(1)(Effect.succeed(conn)),
        transactionAcquirer: Effect.uninterruptibleMask((restore) =>
          Effect.as(
            Effect.zipRight(
              restore(lock.take(1)),
              Effect.tap(Effect.scope, (scope) => Scope.addFinalizer(scope, lock.release(1)))
            ),
            conn
          )
        ),
        compiler: Statement.makeCompilerSqlite(),
        spanAttributes: [["db.system.name", "sqlite"]]
      })
    })
  ).pipe(Layer.provide(Reactivity.layer))
