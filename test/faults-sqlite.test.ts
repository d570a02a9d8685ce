/**
 * SQLite under faults: another process holds the database's write lock. better-sqlite3 runs each
 * statement synchronously, so an attempt cannot outlive its call: a locked database answers
 * SQLITE_BUSY after the busy timeout, the statement is rolled back, and the engine knows it. Each
 * scenario is reconciled like the server ones (test/fault/reconcile.ts): accepted = committed +
 * failed + unknown_outcome, nothing reported failed is in the table, nothing committed is missing.
 */
import { spawn } from "node:child_process"
import { createRequire } from "node:module"
import * as SqlClient from "@effect/sql/SqlClient"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { Chunk, Effect, Exit, Fiber, Layer, Schema, Scope, Stream } from "effect"
import { BatchFlow, type BatchFlowConfig, Conflict, Table } from "effect-batchflow"
import * as Sqlite from "effect-batchflow/Sqlite"
import { describe, expect, it } from "vitest"
import { type Outcome, problems, produceRows, summary, tally } from "./fault/reconcile.js"
import { tempSqliteFile } from "./sql-helpers.js"

const Database = createRequire(import.meta.url)("better-sqlite3")

/** Holds `BEGIN EXCLUSIVE` on `file` from another process for `millis`; resolves once the lock is held. */
const holdLock = (file: string, millis: number): Promise<{ readonly released: Promise<void> }> =>
  new Promise((resolve, reject) => {
    const script = `const D = require(${JSON.stringify(createRequire(import.meta.url).resolve("better-sqlite3"))});
      const db = new D(${JSON.stringify(file)}); db.exec("BEGIN EXCLUSIVE"); console.log("locked");
      setTimeout(() => { db.exec("COMMIT"); db.close(); }, ${millis});`
    const child = spawn(process.execPath, ["-e", script], { stdio: ["ignore", "pipe", "inherit"] })
    const released = new Promise<void>((done) => child.once("exit", () => done()))
    child.once("error", reject)
    child.stdout.once("data", () => resolve({ released }))
  })

const Row = Schema.Struct({ id: Schema.Number, v: Schema.String })

const run = async (
  name: string,
  options: BatchFlowConfig.Options & Sqlite.StatementOptions,
  rows: number,
  lockMillis: number,
  closeTimeoutMillis: number,
  lockAt = Math.floor(rows / 4)
): Promise<Outcome> => {
  const file = tempSqliteFile(name)
  const setup = new Database(file)
  setup.pragma("journal_mode = WAL")
  setup.exec(`CREATE TABLE ${name} (id INTEGER PRIMARY KEY, v TEXT NOT NULL)`)
  setup.close()
  const table = Table.make(name, { columns: Row, key: ["id"], conflict: Conflict.none })
  let lock: { readonly released: Promise<void> } | undefined
  const program = Effect.gen(function* () {
    const scope = yield* Scope.make()
    const ctx = yield* Layer.buildWithScope(
      Sqlite.layer(options).pipe(
        Layer.provideMerge(
          Layer.effectDiscard(
            Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe("PRAGMA busy_timeout = 100"))
          ).pipe(Layer.provideMerge(SqliteClient.layer({ filename: file })))
        )
      ),
      scope
    )
    const flow = ctx.unsafeMap.get(BatchFlow.BatchFlow.key) as BatchFlow.BatchFlow
    const failures = yield* Effect.fork(Stream.runCollect(flow.failures))
    const { acked, writes } = yield* produceRows(flow, table, rows, (id) =>
      Effect.gen(function* () {
        if (id + 1 === lockAt) lock = yield* Effect.promise(() => holdLock(file, lockMillis))
        if (id % 50 === 49) yield* Effect.sleep("2 millis")
      })
    )
    const started = Date.now()
    yield* flow.close
    const closeMillis = Date.now() - started
    yield* Scope.close(scope, Exit.void)
    yield* Fiber.joinAll(writes)
    return {
      failures: Chunk.toReadonlyArray(yield* Fiber.join(failures)),
      stats: yield* flow.stats,
      closeMillis,
      acked
    }
  })
  const { failures, stats, closeMillis, acked } = await Effect.runPromise(program)
  await lock?.released
  const { reasons, reportedFailed, reportedUnknown } = tally(failures)
  const check = new Database(file, { readonly: true })
  const ids = check.prepare(`SELECT id, COUNT(*) AS n FROM ${name} GROUP BY id`).all() as Array<{
    id: number
    n: number
  }>
  check.close()
  const outcome: Outcome = {
    accepted: stats.accepted,
    committed: stats.committed,
    failed: stats.failed,
    unknownOutcome: stats.unknownOutcome,
    lateCommitted: stats.lateCommitted,
    lateFailed: stats.lateFailed,
    reasons,
    closeMillis,
    releaseMillis: 0,
    inTable: new Map(ids.map((r) => [r.id, r.n])),
    reportedFailed,
    reportedUnknown,
    acked
  }
  console.log(summary(`sqlite ${name}`, outcome))
  expect(problems(outcome, rows, closeTimeoutMillis)).toEqual([])
  return outcome
}

for (const direct of [false, true]) {
  describe.sequential(`sqlite${direct ? " direct" : ""}: truthful outcomes under a held write lock`, () => {
    const suffix = direct ? "_direct" : ""
    it("a lock shorter than the retries: SQLITE_BUSY is retried and every row is written once", async () => {
      const outcome = await run(
        `fault_busy_short${suffix}`,
        {
          direct,
          flushSize: 100,
          flushInterval: "20 millis",
          timeout: "1 second",
          retry: { maxAttempts: 20, backoffBase: "50 millis", maxBackoff: "200 millis" }
        },
        2_000,
        800,
        30_000
      )
      expect(outcome.failed + outcome.unknownOutcome).toBe(0)
    }, 60_000)

    it("a lock longer than the retries: the rows are reported busy (known not written) and are not in the table", async () => {
      const outcome = await run(
        `fault_busy_long${suffix}`,
        {
          direct,
          flushSize: 100,
          flushInterval: "20 millis",
          timeout: "1 second",
          retry: { maxAttempts: 2, backoffBase: "20 millis", maxBackoff: "40 millis" }
        },
        2_000,
        1_500,
        30_000
      )
      expect(outcome.reasons.busy ?? 0).toBeGreaterThan(0)
      expect(outcome.unknownOutcome).toBe(0)
    }, 60_000)

    it("close under load with a short closeTimeout keeps its deadline; rows never written are close_timeout", async () => {
      const outcome = await run(
        `fault_busy_close${suffix}`,
        {
          direct,
          flushSize: 100,
          bufferSize: 5_000,
          flushInterval: "20 millis",
          timeout: "1 second",
          closeTimeout: "300 millis",
          retry: { maxAttempts: 50, backoffBase: "50 millis", maxBackoff: "200 millis" }
        },
        3_000,
        3_000,
        300,
        // Locked near the end: the buffer holds rows when close starts.
        2_500
      )
      expect(outcome.reasons.close_timeout ?? 0).toBeGreaterThan(0)
    }, 60_000)
  })
}
