/**
 * MySQL's direct path (`direct: true`): the mysql2 pool is found behind the client (and the lookup
 * fails loudly here if a new @effect/sql-mysql2 stops holding a PoolConnection of its pool), a split
 * batch is one transaction on one connection, and every connection goes back to the pool. The rest
 * of the behaviour (modes, values, errors, faults) runs in the shared SQL suites with a
 * "mysql direct" backend.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import * as Conflict from "effect-batchflow/Conflict"
import * as Mysql from "effect-batchflow/Mysql"
import * as Table from "effect-batchflow/Table"
import * as MysqlDirect from "../src/internal/sql/mysqlDirect.js"
import { count, mysqlClient, recreate } from "./sql-helpers.js"

const Row = Schema.Struct({ id: Schema.Number, name: Schema.String })
const tableOf = (name: string) => Table.make(name, { columns: Row, conflict: Conflict.none })
const ddl = (name: string) => `CREATE TABLE ${name} (id BIGINT PRIMARY KEY, name VARCHAR(64) NOT NULL)`
const rowsOf = (from: number, n: number) =>
  Array.from({ length: n }, (_, i) => ({ id: from + i, name: `n${from + i}` }))

describe("mysql direct: the pool behind the client", () => {
  it.live("is found on an @effect/sql-mysql2 client, and its connections reach the same server", () =>
    Effect.gen(function* () {
      const sql = yield* SqlClient.SqlClient
      const found = yield* MysqlDirect.poolOf(sql)
      expect(found._tag).toBe("Found")
    }).pipe(Effect.provide(mysqlClient(2)))
  )

  it.live("a split batch whose last statement fails writes nothing (one transaction)", () =>
    Effect.gen(function* () {
      yield* recreate("mysql_direct_split", ddl("mysql_direct_split"))
      const sql = yield* SqlClient.SqlClient
      yield* sql.unsafe("INSERT INTO mysql_direct_split (id, name) VALUES (900, 'there')")
      const executor = yield* Mysql.makeExecutor({ direct: true, maxStatementBytes: 200 })
      // 40 rows in several statements; the last row's key is taken: its statement fails.
      const rows = [...rowsOf(1, 39), { id: 900, name: "dup" }]
      const error = yield* Effect.flip(executor.execute(tableOf("mysql_direct_split"), rows))
      expect(String(error)).toContain("Duplicate")
      expect(yield* count("mysql_direct_split")).toBe(1)
    }).pipe(Effect.provide(mysqlClient(2)))
  )

  it.live("with a pool of one, 30 batches (some failing) leave the connection free for the app", () =>
    Effect.gen(function* () {
      yield* recreate("mysql_direct_pool", ddl("mysql_direct_pool"))
      const executor = yield* Mysql.makeExecutor({ direct: true })
      const table = tableOf("mysql_direct_pool")
      for (let i = 0; i < 30; i++) {
        // Every third batch repeats a key already written: a failed statement.
        const from = i % 3 === 2 ? 0 : i * 10
        yield* Effect.either(executor.execute(table, rowsOf(from, 10)))
      }
      expect(yield* count("mysql_direct_pool")).toBe(200)
    }).pipe(Effect.timeout("10 seconds"), Effect.provide(mysqlClient(1)))
  )
})
