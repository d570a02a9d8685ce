/**
 * Failure handling without boilerplate: the `onFailure` handler (in order, never blocking the
 * engine, its own failures logged, overflow counted) and dead-letter targets (failed rows written to
 * another target with their reason and attempts; a dead-letter target that fails is reported and
 * never dead-lettered again). On the real PostgreSQL and Redis.
 */

import * as SqlClient from "@effect/sql/SqlClient"
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Effect, Layer, Ref, Schema } from "effect"
import { BatchExecutor, BatchFlow, BatchFlowConfig, BatchFlowError, Table, Target } from "effect-batchflow"
import * as Postgres from "effect-batchflow/Postgres"
import * as Redis from "effect-batchflow/Redis"
import { startFlow } from "./helpers-engine.js"
import { clientLayer, deleteKeys, direct } from "./redis-helpers.js"
import { pgClient, recreate, runFlow, selectAll } from "./sql-helpers.js"

const Events = Target.make("events", { schema: Schema.Struct({ id: Schema.Number }), key: ["id"] })

const rejected = new BatchFlowError.ExecutorError({
  message: "rejected",
  retryable: false,
  reason: "rejected"
})

describe("onFailure", () => {
  it.live("sees every failure in order; a failing handler is logged and the flow goes on", () =>
    Effect.gen(function* () {
      const seen: Array<ReadonlyArray<unknown>> = []
      const executor = BatchExecutor.make((_target, rows) =>
        (rows as ReadonlyArray<{ id: number }>).some((r) => r.id % 2 === 1)
          ? Effect.fail(rejected)
          : Effect.void
      )
      const { flow } = yield* startFlow(
        {
          flushSize: 1,
          flushInterval: "1 millis",
          concurrency: 1,
          onFailure: (failure) =>
            Effect.suspend(() => {
              seen.push(failure.rows)
              // Every second call fails, and one dies: neither stops the handler or the flow.
              if (seen.length === 2) return Effect.fail("handler error")
              if (seen.length === 3) return Effect.die("handler defect")
              return Effect.void
            })
        },
        executor
      )
      for (let id = 0; id < 10; id++) yield* flow.submit(Events, { id })
      yield* flow.close
      expect(seen).toEqual([[{ id: 1 }], [{ id: 3 }], [{ id: 5 }], [{ id: 7 }], [{ id: 9 }]])
      const stats = yield* flow.stats
      expect(stats).toMatchObject({ committed: 5, failed: 5, droppedOnFailure: 0 })
    })
  )

  it.live(
    "a slow handler never holds the engine; past failureBufferSize failures are dropped and counted",
    () =>
      Effect.gen(function* () {
        const release = yield* Deferred.make<void>()
        const handled = yield* Ref.make(0)
        const executor = BatchExecutor.make(() => Effect.fail(rejected))
        const { flow } = yield* startFlow(
          {
            flushSize: 1,
            flushInterval: "1 millis",
            concurrency: 1,
            failureBufferSize: 3,
            closeTimeout: "5 seconds",
            onFailure: () =>
              Effect.zipRight(
                Deferred.await(release),
                Ref.update(handled, (n) => n + 1)
              )
          },
          executor
        )
        for (let id = 0; id < 10; id++) yield* flow.submit(Events, { id })
        yield* flow.flush
        // All ten failed and were settled although the handler has not finished one.
        const stats = yield* flow.stats
        expect(stats.failed).toBe(10)
        expect(yield* Ref.get(handled)).toBe(0)
        yield* Deferred.succeed(release, undefined)
        yield* flow.close
        const handledCount = yield* Ref.get(handled)
        const dropped = (yield* flow.stats).droppedOnFailure
        // The handler holds one failure, the queue three more; the rest were dropped.
        expect(handledCount + dropped).toBe(10)
        expect(dropped).toBeGreaterThanOrEqual(5)
      })
  )
})

describe("onFailure and close", () => {
  it.live("a handler that never finishes cannot hold close past closeTimeout", () =>
    Effect.gen(function* () {
      const executor = BatchExecutor.make(() => Effect.fail(rejected))
      const { flow } = yield* startFlow(
        {
          flushSize: 1,
          flushInterval: "1 millis",
          closeTimeout: "300 millis",
          onFailure: () => Effect.never
        },
        executor
      )
      yield* flow.submit(Events, { id: 1 })
      yield* flow.flush
      const started = Date.now()
      yield* flow.close
      const took = Date.now() - started
      expect(took).toBeGreaterThanOrEqual(250)
      expect(took).toBeLessThan(2_000)
      expect(yield* flow.isDone).toBe(true)
    })
  )
})

// ---------------------------------------------------------------- dead letters on PostgreSQL

const People = Table.make("dl_people", {
  columns: Schema.Struct({ id: Schema.Number, age: Schema.Number }),
  key: ["id"]
})

const Letters = Table.make("dl_letters", {
  columns: Schema.Struct({
    target: Schema.String,
    reason: Schema.String,
    attempts: Schema.Number,
    row: Schema.String
  })
})

const toLetter = BatchFlowConfig.deadLetterTo(Letters, (letter) => ({
  target: letter.target,
  reason: letter.reason,
  attempts: letter.attempts,
  row: JSON.stringify(letter.row)
}))

describe("dead letters on PostgreSQL", () => {
  it.live("rows the database rejects go to the dead-letter table with their reason; the others commit", () =>
    Effect.gen(function* () {
      yield* recreate("dl_people", "CREATE TABLE dl_people (id BIGINT PRIMARY KEY, age INT CHECK (age >= 0))")
      yield* recreate(
        "dl_letters",
        "CREATE TABLE dl_letters (seq SERIAL PRIMARY KEY, target TEXT, reason TEXT, attempts INT, row TEXT)"
      )
      const rows = Array.from({ length: 40 }, (_, i) => ({ id: i, age: i % 10 === 3 ? -1 : 30 }))
      const run = yield* runFlow(Postgres.layer({ flushSize: 40, deadLetter: toLetter }), (flow) =>
        flow.submitAll(People, rows)
      )
      const people = yield* selectAll<{ id: string }>("dl_people", "id")
      expect(people.map((p) => Number(p.id))).toEqual(rows.filter((r) => r.age >= 0).map((r) => r.id))
      const letters = yield* selectAll<{ target: string; reason: string; attempts: number; row: string }>(
        "dl_letters",
        "seq"
      )
      // The bad rows are isolated in parts written concurrently: their letters arrive in any order.
      const lettered = letters.map((l) => JSON.parse(l.row) as { id: number; age: number })
      expect(lettered.sort((a, b) => a.id - b.id)).toEqual([
        { id: 3, age: -1 },
        { id: 13, age: -1 },
        { id: 23, age: -1 },
        { id: 33, age: -1 }
      ])
      for (const l of letters) {
        expect(l.target).toBe("dl_people")
        expect(l.reason).toBe("check_violation")
        expect(l.attempts).toBeGreaterThanOrEqual(1)
      }
      expect(run.failures.every((f) => f.target === "dl_people")).toBe(true)
      expect(run.failures.flatMap((f) => f.rows)).toHaveLength(4)
      // The letters are accepted and committed like any rows.
      expect(run.stats).toMatchObject({ accepted: 44, committed: 40, failed: 4, deadLettered: 4 })
    }).pipe(Effect.provide(pgClient()))
  )

  it.live("a dead-letter target that fails is reported, counted, and never dead-lettered again", () =>
    Effect.gen(function* () {
      yield* recreate("dl_people", "CREATE TABLE dl_people (id BIGINT PRIMARY KEY, age INT CHECK (age >= 0))")
      // No dead-letter table at all: its writes fail (schema), and are not dead-lettered again.
      yield* Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe("DROP TABLE IF EXISTS dl_letters"))
      const rows = [
        { id: 1, age: 1 },
        { id: 2, age: -2 },
        { id: 3, age: 3 }
      ]
      const run = yield* runFlow(
        Postgres.layer({
          flushSize: 10,
          deadLetter: toLetter,
          retry: { maxAttempts: 2, backoffBase: "1 millis" }
        }),
        (flow) => flow.submitAll(People, rows)
      )
      const of = (target: string) => run.failures.filter((f) => f.target === target)
      expect(of("dl_people").flatMap((f) => f.rows)).toEqual([{ id: 2, age: -2 }])
      expect(of("dl_letters").flatMap((f) => f.rows)).toHaveLength(1)
      expect(of("dl_letters")[0]?.reason).toBe("schema")
      expect(run.stats).toMatchObject({ accepted: 4, committed: 2, failed: 2, deadLettered: 1 })
    }).pipe(Effect.provide(pgClient()))
  )
})

// ---------------------------------------------------------------- dead letters on Redis

const DB = 11
const P = "dl:"

describe("dead letters on Redis", () => {
  it.scopedLive("commands Redis refuses go to a dead-letter stream with their reason", () =>
    Effect.gen(function* () {
      const redis = yield* direct(DB)
      yield* deleteKeys(redis, `${P}*`)
      yield* Effect.promise(() => redis.hset(`${P}bad`, "f", "v"))
      const Counters = Redis.incrBy("counters", { prefix: P })
      const Dead = Redis.xadd("dead", { prefix: P })
      const deadLetter = BatchFlowConfig.deadLetterTo(Dead, (letter) => ({
        key: "letters",
        fields: {
          target: letter.target,
          reason: letter.reason,
          attempts: letter.attempts,
          row: JSON.stringify(letter.row)
        }
      }))
      const stats = yield* Effect.gen(function* () {
        const flow = yield* BatchFlow.BatchFlow
        yield* flow.submitAll(Counters, [
          { key: "good1", by: 1 },
          { key: "bad", by: 1 },
          { key: "good2", by: 1 }
        ])
        yield* flow.close
        return yield* flow.stats
      }).pipe(Effect.provide(Redis.layer({ flushSize: 10, deadLetter }).pipe(Layer.provide(clientLayer(DB)))))
      expect(stats).toMatchObject({ committed: 3, failed: 1, deadLettered: 1 })
      const entries = yield* Effect.promise(() => redis.xrange(`${P}letters`, "-", "+"))
      expect(entries).toHaveLength(1)
      const fields = entries[0]![1]
      const asObject = Object.fromEntries(
        Array.from({ length: fields.length / 2 }, (_, i) => [fields[2 * i], fields[2 * i + 1]])
      )
      expect(asObject).toEqual({
        target: "counters",
        reason: "wrongtype",
        attempts: "1",
        row: JSON.stringify({ key: "bad", by: 1 })
      })
    })
  )
})
