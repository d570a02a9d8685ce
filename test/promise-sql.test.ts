/**
 * The Promise facade on the real PostgreSQL, MariaDB and SQLite: a flow made from a URL (or a
 * file name) and one made from the user's own pool (or database) write their rows, reject invalid
 * rows and submits after close with the library's own error classes, and `close` leaves the
 * user's pool open.
 */
import { mkdtempSync } from "node:fs"
import { createRequire } from "node:module"
import { tmpdir } from "node:os"
import { join } from "node:path"
import {
  type Backend,
  BatchFlowClosed,
  Conflict,
  createBatchFlow,
  InvalidRow,
  Schema,
  Table
} from "effect-batchflow/promise"
import * as mysql from "mysql2"
import * as mysqlPromise from "mysql2/promise"
import pg from "pg"
import { afterAll, beforeAll, describe, expect, it } from "vitest"

/** What the test uses of better-sqlite3 (which ships no types). */
interface RawDatabase {
  readonly open: boolean
  readonly pragma: (source: string) => unknown
  readonly exec: (source: string) => unknown
  readonly prepare: (source: string) => { all: () => Array<unknown>; get: () => unknown }
  readonly close: () => void
}
const Database = createRequire(import.meta.url)("better-sqlite3") as new (filename: string) => RawDatabase

const pgUrl = process.env.BATCHFLOW_PG_URL ?? "postgres://postgres@127.0.0.1:5432/test"
const mysqlUrl = process.env.BATCHFLOW_MYSQL_URL ?? "mysql://root@127.0.0.1:3306/test"

const table = "promise_sql_events"

const Events = Table.make(table, {
  columns: Schema.Struct({ id: Schema.Number, kind: Schema.String, amount: Schema.Number }),
  conflict: Conflict.ignore,
  key: ["id"]
})

/** One database as the test sees it: its own connection to create the table and count rows. */
interface Server {
  readonly name: string
  readonly reset: () => Promise<void>
  readonly rows: () => Promise<ReadonlyArray<{ id: number; kind: string; amount: number }>>
  /** The backends to test: by URL (or file) and by a pool (or database) of the test's own. */
  readonly backends: () => ReadonlyArray<{ readonly how: string; readonly backend: Backend }>
  /** Whether the test's own pool still answers (after the flow is closed). */
  readonly ownStillOpen: () => Promise<boolean>
  readonly end: () => Promise<void>
}

const postgres = (): Server => {
  const pool = new pg.Pool({ connectionString: pgUrl, max: 4 })
  return {
    name: "PostgreSQL",
    reset: async () => {
      await pool.query(`DROP TABLE IF EXISTS ${table}`)
      await pool.query(
        `CREATE TABLE ${table} (id BIGINT PRIMARY KEY, kind TEXT NOT NULL, amount DOUBLE PRECISION NOT NULL)`
      )
    },
    rows: async () => (await pool.query(`SELECT id::int AS id, kind, amount FROM ${table} ORDER BY id`)).rows,
    backends: () => [
      { how: "a URL", backend: { type: "postgres", url: pgUrl, maxConnections: 4 } },
      { how: "the user's pg Pool", backend: { type: "postgres", pool } }
    ],
    ownStillOpen: async () => (await pool.query("SELECT 1 AS one")).rows[0]?.one === 1,
    end: () => pool.end()
  }
}

const mariadb = (): Server => {
  const callbackPool = mysql.createPool({ uri: mysqlUrl, connectionLimit: 4 })
  const promisePool = mysqlPromise.createPool({ uri: mysqlUrl, connectionLimit: 4 })
  return {
    name: "MariaDB",
    reset: async () => {
      await promisePool.query(`DROP TABLE IF EXISTS ${table}`)
      await promisePool.query(
        `CREATE TABLE ${table} (id BIGINT PRIMARY KEY, kind VARCHAR(20) NOT NULL, amount DOUBLE NOT NULL)`
      )
    },
    rows: async () => {
      const [rows] = await promisePool.query(`SELECT id, kind, amount FROM ${table} ORDER BY id`)
      return (rows as Array<{ id: number | string; kind: string; amount: number }>).map((r) => ({
        ...r,
        id: Number(r.id)
      }))
    },
    backends: () => [
      { how: "a URL", backend: { type: "mysql", url: mysqlUrl, maxConnections: 4 } },
      { how: "the user's mysql2 pool", backend: { type: "mysql", pool: callbackPool } },
      { how: "the user's mysql2/promise pool", backend: { type: "mysql", pool: promisePool } }
    ],
    ownStillOpen: async () => {
      const [[viaPromise]] = (await promisePool.query("SELECT 1 AS one")) as unknown as [[{ one: number }]]
      const viaCallback = await new Promise<number>((resolve, reject) =>
        callbackPool.query("SELECT 1 AS one", (error, rows) =>
          error ? reject(error) : resolve((rows as Array<{ one: number }>)[0]!.one)
        )
      )
      return viaPromise?.one === 1 && viaCallback === 1
    },
    end: async () => {
      await promisePool.end()
      await new Promise<void>((resolve) => callbackPool.end(() => resolve()))
    }
  }
}

const sqlite = (): Server => {
  const file = join(mkdtempSync(join(tmpdir(), "batchflow-promise-")), "events.sqlite")
  const db = new Database(file)
  db.pragma("journal_mode = WAL")
  return {
    name: "SQLite",
    reset: async () => {
      db.exec(`DROP TABLE IF EXISTS ${table}`)
      db.exec(`CREATE TABLE ${table} (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, amount REAL NOT NULL)`)
    },
    rows: async () =>
      db.prepare(`SELECT id, kind, amount FROM ${table} ORDER BY id`).all() as Array<{
        id: number
        kind: string
        amount: number
      }>,
    backends: () => [
      { how: "a file name", backend: { type: "sqlite", filename: file } },
      { how: "the user's better-sqlite3 Database", backend: { type: "sqlite", database: db } }
    ],
    ownStillOpen: async () => db.open && (db.prepare("SELECT 1 AS one").get() as { one: number }).one === 1,
    end: async () => {
      db.close()
    }
  }
}

const servers: ReadonlyArray<Server> = [postgres(), mariadb(), sqlite()]

afterAll(async () => {
  for (const server of servers) await server.end()
})

for (const server of servers) {
  for (const { how, backend } of server.backends()) {
    describe(`${server.name} through ${how}`, () => {
      beforeAll(() => server.reset())

      it("submit, submitAll, write and flush write every row; stats count them; close closes intake", async () => {
        await server.reset()
        const flow = await createBatchFlow({ backend, flushSize: 100, flushInterval: "20 millis" })
        for (let id = 1; id <= 250; id++) await flow.submit(Events, { id, kind: "click", amount: id / 2 })
        await flow.submitAll(
          Events,
          Array.from({ length: 50 }, (_, i) => ({ id: 251 + i, kind: "bulk", amount: 0 }))
        )
        await flow.flush()
        expect((await server.rows()).length).toBe(300)
        await flow.write(Events, { id: 301, kind: "view", amount: 1.5 })
        const rows = await server.rows()
        expect(rows.length).toBe(301)
        expect(rows[300]).toEqual({ id: 301, kind: "view", amount: 1.5 })
        expect(rows[0]).toEqual({ id: 1, kind: "click", amount: 0.5 })
        const stats = flow.stats()
        expect(stats).toMatchObject({ accepted: 301, committed: 301, failed: 0, buffered: 0, inFlight: 0 })

        await flow.submit(Events, { id: 302, kind: "last", amount: 2 })
        await flow.close()
        await flow.close() // idempotent
        expect((await server.rows()).length).toBe(302) // close wrote the buffered row

        const after = await flow.submit(Events, { id: 303, kind: "late", amount: 0 }).then(
          () => undefined,
          (error: unknown) => error
        )
        expect(after).toBeInstanceOf(BatchFlowClosed)
        expect((after as BatchFlowClosed).target).toBe(table)
        expect(flow.unsafeOffer(Events, { id: 304, kind: "late", amount: 0 })).toBe(false)
        await expect(flow.trySubmit(Events, { id: 305, kind: "late", amount: 0 })).rejects.toBeInstanceOf(
          BatchFlowClosed
        )
        expect((await server.rows()).length).toBe(302)
      })

      it("writeAll resolves once every row is written, with no failures; the rows are in the table then", async () => {
        await server.reset()
        const flow = await createBatchFlow({ backend, flushSize: 100, flushInterval: "20 millis" })
        const failures = await flow.writeAll(
          Events,
          Array.from({ length: 250 }, (_, i) => ({ id: 1 + i, kind: "all", amount: i }))
        )
        expect(failures).toEqual([])
        expect((await server.rows()).length).toBe(250)
        await flow.close()
      })

      it("an invalid row rejects with InvalidRow naming the field; nothing of it is written", async () => {
        await server.reset()
        const flow = await createBatchFlow({ backend, flushInterval: "20 millis" })
        try {
          const bad = { id: 1, kind: 42, amount: 1 } as unknown as {
            id: number
            kind: string
            amount: number
          }
          const rejected = await flow.submit(Events, bad).then(
            () => undefined,
            (error: unknown) => error
          )
          expect(rejected).toBeInstanceOf(InvalidRow)
          expect(rejected).toBeInstanceOf(Error)
          expect(rejected).toMatchObject({ target: table, field: "kind", problem: "wrong_type" })
          expect(() => flow.unsafeOffer(Events, { id: 2, amount: 1 } as never)).toThrow(InvalidRow)
          const inBulk = await flow
            .submitAll(Events, [
              { id: 3, kind: "ok", amount: 1 },
              { id: 4, kind: "ok", amount: Number.NaN }
            ])
            .then(
              () => undefined,
              (error: unknown) => error
            )
          expect(inBulk).toMatchObject({ field: "amount", problem: "not_finite", index: 1 })
          await expect(
            flow.write(Events, { id: 5, kind: "x", amount: 1, extra: 1 } as never)
          ).rejects.toMatchObject({
            _tag: "InvalidRow",
            field: "extra",
            problem: "extra"
          })
          await flow.write(Events, { id: 6, kind: "ok", amount: 1 })
          expect((await server.rows()).map((r) => r.id)).toEqual([6])
        } finally {
          await flow.close()
        }
      })

      it("close leaves the user's own pool or database open", async () => {
        await server.reset()
        const flow = await createBatchFlow({ backend })
        await flow.write(Events, { id: 1, kind: "x", amount: 1 })
        await flow.close()
        expect(await server.ownStillOpen()).toBe(true)
      })
    })
  }
}

describe("createBatchFlow", () => {
  it("rejects an invalid option with BatchFlowConfigError naming the field", async () => {
    await expect(
      createBatchFlow({ backend: { type: "postgres", url: pgUrl }, flushSize: 0 })
    ).rejects.toMatchObject({ _tag: "BatchFlowConfigError", field: "flushSize" })
  })

  it("rejects with the driver's error when the database cannot be reached", async () => {
    const rejected = await createBatchFlow({
      backend: { type: "postgres", url: "postgres://postgres@127.0.0.1:1/test" }
    }).then(
      () => undefined,
      (error: unknown) => error
    )
    expect(rejected).toBeInstanceOf(Error)
    expect(String((rejected as Error).message)).toMatch(/connect/i)
  })
})
