/**
 * `writeAll`: a caller that must know each row's fate before it goes on (the durable worker
 * acknowledging a stream entry, say) gets, once every row is committed or reported, the distinct
 * failures of its rows: their rows are exactly the rows not committed. On the real PostgreSQL, and
 * with a custom executor for the bookkeeping cases.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, Schema } from "effect"
import { BatchExecutor, BatchFlow, BatchFlowError, Table, Target } from "effect-batchflow"
import * as Postgres from "effect-batchflow/Postgres"
import { count, pgClient, recreate, runFlow } from "./sql-helpers.js"

const People = Table.make("wa_people", {
  columns: Schema.Struct({ id: Schema.Number, age: Schema.Number }),
  key: ["id"]
})

const Items = Target.make("wa_items", { schema: Schema.Struct({ id: Schema.Number }), key: ["id"] })

describe("writeAll on PostgreSQL", () => {
  it.live(
    "returns once every row is settled: the failures' rows are exactly the rows the database refused",
    () =>
      Effect.gen(function* () {
        yield* recreate(
          "wa_people",
          "CREATE TABLE wa_people (id BIGINT PRIMARY KEY, age INT CHECK (age >= 0))"
        )
        const rows = Array.from({ length: 1200 }, (_, i) => ({ id: i, age: i % 400 === 7 ? -1 : 30 }))
        const run = yield* runFlow(Postgres.layer({ flushSize: 500 }), (flow) =>
          Effect.gen(function* () {
            const failures = yield* flow.writeAll(People, rows)
            // Settled when it returns: what is in the table now is final.
            const committed = yield* count("wa_people")
            return { failures, committed }
          })
        )
        const { failures, committed } = run.result
        expect(committed).toBe(1197)
        expect(
          failures
            .flatMap((f) => f.rows)
            .map((r) => r.id)
            .sort((a, b) => a - b)
        ).toEqual([7, 407, 807])
        for (const f of failures) expect(f.reason).toBe("check_violation")
        expect(run.stats).toMatchObject({ accepted: 1200, committed: 1197, failed: 3 })
      }).pipe(Effect.provide(pgClient()))
  )

  it.live("all committed: no failures; an invalid row rejects the whole call and accepts nothing", () =>
    Effect.gen(function* () {
      yield* recreate("wa_people", "CREATE TABLE wa_people (id BIGINT PRIMARY KEY, age INT CHECK (age >= 0))")
      const run = yield* runFlow(Postgres.layer({ flushSize: 100 }), (flow) =>
        Effect.gen(function* () {
          const ok = yield* flow.writeAll(
            People,
            Array.from({ length: 250 }, (_, i) => ({ id: i, age: 1 }))
          )
          const invalid = yield* Effect.flip(
            flow.writeAll(People, [{ id: 1000, age: 1 }, { id: "x", age: 1 } as never])
          )
          const empty = yield* flow.writeAll(People, [])
          return { ok, invalid, empty }
        })
      )
      expect(run.result.ok).toEqual([])
      expect(run.result.empty).toEqual([])
      expect(run.result.invalid._tag).toBe("InvalidRow")
      expect(run.result.invalid).toMatchObject({ index: 1, field: "id" })
      expect(yield* count("wa_people")).toBe(250)
      expect(run.stats.accepted).toBe(250)
    }).pipe(Effect.provide(pgClient()))
  )
})

describe("writeAll bookkeeping", () => {
  it.live(
    "rows spread over several batches and a partial failure: one failure per reported batch, none twice",
    () =>
      Effect.gen(function* () {
        const rejected = new BatchFlowError.ExecutorError({
          message: "no",
          retryable: false,
          reason: "rejected"
        })
        const executor = BatchExecutor.forTarget(Items, (rows) =>
          rows[0]!.id >= 300
            ? Effect.fail(rejected)
            : Effect.succeed(
                BatchExecutor.partial(
                  rows.flatMap((r, index) => (r.id % 100 === 50 ? [{ index, error: rejected }] : []))
                )
              )
        )
        const result = yield* Effect.scoped(
          Effect.gen(function* () {
            const flow = yield* BatchFlow.make({ executors: [executor], flushSize: 100, concurrency: 2 })
            const failures = yield* flow.writeAll(
              Items,
              Array.from({ length: 400 }, (_, id) => ({ id }))
            )
            return { failures, stats: yield* flow.stats }
          })
        )
        const failedIds = result.failures.flatMap((f) => f.rows.map((r) => r.id)).sort((a, b) => a - b)
        // Batches 0-99, 100-199, 200-299 lose one row each; 300-399 fails whole.
        expect(failedIds).toEqual([50, 150, 250, ...Array.from({ length: 100 }, (_, i) => 300 + i)])
        expect(new Set(result.failures).size).toBe(result.failures.length)
        expect(result.stats).toMatchObject({ accepted: 400, committed: 297, failed: 103 })
      })
  )

  it.live("a caller interrupted while waiting withdraws nothing: its rows are still written", () =>
    Effect.gen(function* () {
      const memory = BatchExecutor.memory()
      const slow = BatchExecutor.forTarget(Items, (rows) =>
        Effect.zipRight(Effect.sleep("50 millis"), memory.execute(Items, rows))
      )
      const stats = yield* Effect.scoped(
        Effect.gen(function* () {
          const flow = yield* BatchFlow.make({ executors: [slow], flushSize: 10 })
          const waiting = yield* Effect.fork(
            flow.writeAll(
              Items,
              Array.from({ length: 30 }, (_, id) => ({ id }))
            )
          )
          yield* Effect.sleep("10 millis")
          yield* Fiber.interrupt(waiting)
          yield* flow.flush
          return yield* flow.stats
        })
      )
      expect(stats).toMatchObject({ accepted: 30, committed: 30 })
      expect(memory.rowCount()).toBe(30)
    })
  )
})

describe("writeAll beside other callers in the same batch", () => {
  it.live("each caller gets the failure with its own rows only, whatever else its batch held", () =>
    Effect.gen(function* () {
      const rejected = new BatchFlowError.ExecutorError({
        message: "no",
        retryable: false,
        reason: "rejected"
      })
      const calls: Array<number> = []
      const executor = BatchExecutor.forTarget(Items, (rows) =>
        Effect.suspend(() => {
          calls.push(rows.length)
          return Effect.fail(rejected)
        })
      )
      const result = yield* Effect.scoped(
        Effect.gen(function* () {
          const flow = yield* BatchFlow.make({
            executors: [executor],
            flushSize: 10,
            flushInterval: "1 hour"
          })
          const [first, second] = yield* Effect.all(
            [
              flow.writeAll(
                Items,
                Array.from({ length: 5 }, (_, i) => ({ id: i }))
              ),
              flow.writeAll(
                Items,
                Array.from({ length: 5 }, (_, i) => ({ id: 100 + i }))
              )
            ],
            { concurrency: "unbounded" }
          )
          return { first, second }
        })
      )
      // One batch of 10: the two calls' rows together (the interval is an hour, so only the size flushes).
      expect(calls).toEqual([10])
      expect(result.first.flatMap((f) => f.rows.map((r) => r.id))).toEqual([0, 1, 2, 3, 4])
      expect(result.second.flatMap((f) => f.rows.map((r) => r.id))).toEqual([100, 101, 102, 103, 104])
      for (const f of [...result.first, ...result.second]) {
        expect(f).toMatchObject({
          _tag: "BatchFailure",
          reason: "rejected",
          target: "wa_items",
          outcome: "failed"
        })
      }
    })
  )
})
