import { describe, expect, it } from "@effect/vitest"
import { Effect, Logger, LogLevel, Schema } from "effect"
import { BatchExecutor, Target } from "effect-batchflow"
import { capturing } from "./helpers-engine.js"
import { startObservedFlow } from "./metrics-helpers.js"

const User = Schema.Struct({ id: Schema.Number, email: Schema.String, password: Schema.String })
type User = typeof User.Type
const Users = Target.make("l_users", { schema: User, key: ["id"] })
const Slow = Target.make("l_slow", { schema: User, key: ["id"] })

const user = (id: number): User => ({ id, email: `alice${id}@example.com`, password: `hunter2-${id}` })

describe("logs", () => {
  it.effect(
    "a batch slower than slowBatchThreshold logs one warning with target, rows, attempts and duration",
    () =>
      capturing((logs) =>
        Effect.gen(function* () {
          const executor = BatchExecutor.make((target) =>
            target === Slow ? Effect.sleep("150 millis") : Effect.void
          )
          const { flow, closeScope } = yield* startObservedFlow(
            { flushSize: 100, flushInterval: "1 hour", slowBatchThreshold: "100 millis" },
            executor,
            undefined
          )
          yield* flow.submitAll(Slow, [user(1), user(2), user(3)])
          yield* flow.submitAll(Users, [user(4), user(5)])
          yield* closeScope()
          const warnings = logs.filter((l) => l.level === "WARN")
          expect(warnings).toHaveLength(1)
          expect(warnings[0]!.message).toContain(`target "l_slow"`)
          expect(warnings[0]!.message).toContain("150 ms")
          expect(warnings[0]!.annotations).toEqual({
            target: "l_slow",
            rows: 3,
            attempts: 1,
            durationMillis: 150,
            status: "success"
          })
          expect(logs.filter((l) => l.level !== "WARN")).toEqual([])
        })
      )
  )

  it.effect("the default threshold is 5 seconds", () =>
    capturing((logs) =>
      Effect.gen(function* () {
        const executor = BatchExecutor.make((target) =>
          Effect.sleep(target === Slow ? "6 seconds" : "4 seconds")
        )
        const { flow, closeScope } = yield* startObservedFlow(
          { flushSize: 100, flushInterval: "1 hour", concurrency: 2 },
          executor,
          undefined
        )
        yield* flow.submitAll(Slow, [user(1)])
        yield* flow.submitAll(Users, [user(2)])
        yield* closeScope()
        expect(logs.map((l) => [l.level, l.annotations.target])).toEqual([["WARN", "l_slow"]])
      })
    )
  )

  it.effect("a final failure logs one error with target, rows, attempts and reason, and no row values", () =>
    capturing((logs) =>
      Effect.gen(function* () {
        const executor = BatchExecutor.make(() => Effect.fail(new Error("connection reset by peer")))
        const { flow, closeScope } = yield* startObservedFlow(
          { flushSize: 100, flushInterval: "1 hour", slowBatchThreshold: "1 millis" },
          executor,
          undefined
        )
        yield* flow.submitAll(Users, [user(1), user(2)])
        yield* closeScope()
        expect(logs).toHaveLength(1)
        const [log] = logs
        expect(log!.level).toBe("ERROR")
        expect(log!.message).toContain(`2 row(s) for target "l_users"`)
        expect(log!.message).toContain("non_retryable")
        expect(log!.annotations).toEqual({ target: "l_users", reason: "non_retryable", rows: 2, attempts: 1 })
        const everything = JSON.stringify(logs)
        for (const secret of ["alice1@example.com", "hunter2-1", "alice2@example.com", "hunter2-2"]) {
          expect(everything).not.toContain(secret)
        }
      })
    )
  )

  it.effect("an invalid row and a submit after close are rejected without logging", () =>
    capturing((logs) =>
      Effect.gen(function* () {
        const { flow } = yield* startObservedFlow({ flushSize: 10 }, BatchExecutor.memory(), undefined)
        yield* Effect.flip(flow.submit(Users, { ...user(1), id: "x" } as unknown as User))
        yield* flow.close
        yield* Effect.flip(flow.submit(Users, user(2)))
        expect(logs).toEqual([])
      })
    ).pipe(Logger.withMinimumLogLevel(LogLevel.All))
  )
})
