/**
 * What is written is what was validated: rows are copied at submit, so a producer that changes a row
 * afterwards (reuses one object, puts NaN or another key into it) changes nothing that is written.
 * Here with the in-memory executor; test/sql-modes.test.ts checks it on the real databases.
 */
import { describe, expect, it } from "@effect/vitest"
import { BigDecimal, Effect, Fiber, Redacted, Schema } from "effect"
import { BatchExecutor, Target } from "effect-batchflow"
import { settle, startFlow } from "./helpers-engine.js"

const Events = Target.make("events", {
  schema: Schema.Struct({
    id: Schema.Number,
    tags: Schema.Array(Schema.String),
    at: Schema.DateFromSelf,
    meta: Schema.Struct({ source: Schema.String })
  }),
  key: ["id"]
})

describe("rows are frozen at submit", () => {
  it.effect("a row object reused and changed after submit, submitAll and write is written as validated", () =>
    Effect.gen(function* () {
      const memory = BatchExecutor.memory()
      const { flow, closeScope } = yield* startFlow({ flushSize: 100, flushInterval: "1 hour" }, memory)
      const row = { id: 0, tags: ["a"], at: new Date(1_000), meta: { source: "s0" } }
      for (let i = 0; i < 3; i++) {
        row.id = i
        row.tags[0] = `t${i}`
        row.at.setTime(1_000 + i)
        row.meta.source = `s${i}`
        yield* flow.submit(Events, row)
      }
      const batch = [{ ...row, id: 10, tags: ["x"], at: new Date(10), meta: { source: "m" } }]
      yield* flow.submitAll(Events, batch)
      const written = { id: 20, tags: ["w"], at: new Date(20), meta: { source: "w" } }
      const writer = yield* Effect.fork(flow.write(Events, written))
      yield* settle()
      // Changed after submit: not what was validated, and not valid at all.
      row.id = Number.NaN
      row.tags.push("late")
      batch[0]!.id = 99
      batch[0]!.tags[0] = "changed"
      written.id = -1
      written.meta.source = "changed"
      yield* flow.flush
      yield* Fiber.join(writer)
      yield* closeScope()
      expect(memory.rowsOf("events")).toEqual([
        { id: 0, tags: ["t0"], at: new Date(1_000), meta: { source: "s0" } },
        { id: 1, tags: ["t1"], at: new Date(1_001), meta: { source: "s1" } },
        { id: 2, tags: ["t2"], at: new Date(1_002), meta: { source: "s2" } },
        { id: 10, tags: ["x"], at: new Date(10), meta: { source: "m" } },
        { id: 20, tags: ["w"], at: new Date(20), meta: { source: "w" } }
      ])
    })
  )
})

describe("Target.copy", () => {
  const T = Target.make("t", {
    schema: Schema.Struct({
      id: Schema.Number,
      note: Schema.optional(Schema.String),
      tags: Schema.Array(Schema.String),
      amount: Schema.BigDecimalFromSelf,
      secret: Schema.RedactedFromSelf(Schema.String),
      bytes: Schema.Uint8ArrayFromSelf
    })
  })
  it("copies nested arrays, dates and byte arrays, keeps immutable class instances, leaves missing fields missing", () => {
    const amount = BigDecimal.unsafeFromString("1.50")
    const secret = Redacted.make("s")
    const row = { id: 1, tags: ["a"], amount, secret, bytes: new Uint8Array([1, 2]) }
    const copy = T.copy(row)
    expect(copy).toEqual(row)
    expect("note" in copy).toBe(false)
    expect(copy.tags).not.toBe(row.tags)
    expect(copy.bytes).not.toBe(row.bytes)
    expect(copy.amount).toBe(amount)
    expect(copy.secret).toBe(secret)
    expect(T.copy({ ...row, note: "n" }).note).toBe("n")
  })
  it("a schema that is not a struct of named fields gets the generic deep copy", () => {
    const U = Target.make("u", {
      schema: Schema.Record({ key: Schema.String, value: Schema.Array(Schema.Number) })
    })
    const row = { a: [1], b: [2] }
    const copy = U.copy(row)
    expect(copy).toEqual(row)
    expect(copy.a).not.toBe(row.a)
  })
})
