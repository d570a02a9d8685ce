import { describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Random, Schema, TestClock } from "effect"
import { Target } from "effect-batchflow"
import { advanceUntil, recorder, settle, startFlow } from "./helpers-engine.js"

/** Rows of the ordering tests say how long the executor takes to write them. */
const Timed = Schema.Struct({ id: Schema.Number, delay: Schema.Number, label: Schema.String })
type Timed = typeof Timed.Type

/** An executor sleeping as long as the slowest row of the call. */
const timedRecorder = () =>
  recorder((_, rows) => Effect.sleep(Duration.millis(Math.max(...rows.map((r) => (r as Timed).delay)))))

const labels = (rows: ReadonlyArray<unknown>) => rows.map((r) => (r as { readonly label: string }).label)

describe("same-key ordering", () => {
  const Versions = Target.make("versions", {
    schema: Schema.Struct({ key: Schema.Number, version: Schema.Number }),
    key: ["key"]
  })
  type Version = typeof Versions extends Target.Target<infer A> ? A : never

  for (const seed of [1, 7, 42]) {
    it.effect(
      `same-key rows commit in submission order with concurrency 8 and a randomly slow executor (seed ${seed})`,
      () =>
        Effect.gen(function* () {
          const rng = Random.make(seed)
          const rec = recorder(() =>
            Effect.flatMap(rng.nextIntBetween(1, 40), (ms) => Effect.sleep(Duration.millis(ms)))
          )
          const { flow, closeScope } = yield* startFlow(
            { concurrency: 8, flushSize: 4, flushInterval: "10 millis" },
            rec.executor
          )
          const next = new Map<number, number>()
          const total = 400
          for (let i = 0; i < total; i++) {
            const key = yield* rng.nextIntBetween(0, 10)
            const version = next.get(key) ?? 0
            next.set(key, version + 1)
            yield* flow.submit(Versions, { key, version })
          }
          expect(yield* advanceUntil(() => rec.committedCount() === total, "5 millis", 10_000)).toBe(true)

          const committed = rec.committedRows("versions") as ReadonlyArray<Version>
          expect(committed.length).toBe(total)
          for (const [key, count] of next) {
            const versions = committed.filter((r) => r.key === key).map((r) => r.version)
            expect(versions, `key ${key}`).toEqual(Array.from({ length: count }, (_, i) => i))
          }
          expect(rec.maxActive()).toBeGreaterThan(1)
          expect(rec.maxActive()).toBeLessThanOrEqual(8)
          yield* closeScope()
        })
    )
  }

  it.effect("a later same-key row waits for an earlier slower one", () =>
    Effect.gen(function* () {
      const Keyed = Target.make("keyed", { schema: Timed, key: ["id"] })
      const rec = timedRecorder()
      const { flow, closeScope } = yield* startFlow(
        { concurrency: 8, flushSize: 1, flushInterval: "1 hour" },
        rec.executor
      )
      yield* flow.submit(Keyed, { id: 1, delay: 100, label: "slow" })
      yield* flow.submit(Keyed, { id: 1, delay: 10, label: "fast" })
      yield* settle()
      expect(rec.calls.length).toBe(1)
      yield* TestClock.adjust("100 millis")
      yield* settle()
      expect(labels(rec.committedRows("keyed"))).toEqual(["slow"])
      yield* TestClock.adjust("10 millis")
      yield* settle()
      expect(labels(rec.committedRows("keyed"))).toEqual(["slow", "fast"])
      expect(rec.calls.map((c) => c.startedAt)).toEqual([0, 100])
      expect(rec.maxActive()).toBe(1)
      yield* closeScope()
    })
  )

  it.effect("rows with different keys are written concurrently", () =>
    Effect.gen(function* () {
      const Keyed = Target.make("keyed", { schema: Timed, key: ["id"] })
      const rec = timedRecorder()
      const { flow, closeScope } = yield* startFlow(
        { concurrency: 8, flushSize: 1, flushInterval: "1 hour" },
        rec.executor
      )
      for (let i = 0; i < 8; i++) yield* flow.submit(Keyed, { id: i, delay: 100, label: `k${i}` })
      yield* settle()
      expect(rec.active()).toBe(8)
      yield* TestClock.adjust("100 millis")
      yield* settle()
      expect(rec.committedCount()).toBe(8)
      expect(rec.maxActive()).toBe(8)
      yield* closeScope()
    })
  )
})

describe("unordered targets", () => {
  const cases = [
    { name: "a target without a key", target: Target.make("nokey", { schema: Timed }) },
    {
      name: "a keyed target with ordered: false",
      target: Target.make("unordered", { schema: Timed, key: ["id"], ordered: false })
    }
  ]
  for (const { name, target } of cases) {
    it.effect(`${name} is not serialized: a faster later row commits first`, () =>
      Effect.gen(function* () {
        const rec = timedRecorder()
        const { flow, closeScope } = yield* startFlow(
          { concurrency: 8, flushSize: 1, flushInterval: "1 hour" },
          rec.executor
        )
        yield* flow.submit(target, { id: 1, delay: 100, label: "slow" })
        yield* flow.submit(target, { id: 1, delay: 10, label: "fast" })
        yield* settle()
        expect(rec.active()).toBe(2)
        yield* TestClock.adjust("10 millis")
        yield* settle()
        expect(labels(rec.committedRows(target.name))).toEqual(["fast"])
        yield* TestClock.adjust("90 millis")
        yield* settle()
        expect(labels(rec.committedRows(target.name))).toEqual(["fast", "slow"])
        expect(rec.maxActive()).toBe(2)
        yield* closeScope()
      })
    )
  }
})

describe("composite keys", () => {
  it.effect("rows equal on every key field are serialized; rows differing in one field are not", () =>
    Effect.gen(function* () {
      const Tenanted = Target.make("tenanted", {
        schema: Schema.Struct({
          tenant: Schema.String,
          id: Schema.Number,
          delay: Schema.Number,
          label: Schema.String
        }),
        key: ["tenant", "id"]
      })
      const rec = timedRecorder()
      const { flow, closeScope } = yield* startFlow(
        { concurrency: 8, flushSize: 1, flushInterval: "1 hour" },
        rec.executor
      )
      yield* flow.submit(Tenanted, { tenant: "t1", id: 1, delay: 100, label: "t1/1 slow" })
      // Same id, other tenant: a different key, not held back by the slow row.
      yield* flow.submit(Tenanted, { tenant: "t2", id: 1, delay: 10, label: "t2/1" })
      // Same tenant, other id: a different key too.
      yield* flow.submit(Tenanted, { tenant: "t1", id: 2, delay: 20, label: "t1/2" })
      // Same tenant and id: waits for the slow row although it is faster.
      yield* flow.submit(Tenanted, { tenant: "t1", id: 1, delay: 5, label: "t1/1 fast" })
      expect(yield* advanceUntil(() => rec.committedCount() === 4, "1 millis", 1_000)).toBe(true)
      expect(labels(rec.committedRows("tenanted"))).toEqual(["t2/1", "t1/2", "t1/1 slow", "t1/1 fast"])
      expect(yield* TestClock.currentTimeMillis).toBe(105)
      yield* closeScope()
    })
  )
})
