import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Exit, Fiber, Layer, Schema, Scope, TestClock } from "effect"
import { BatchExecutor, BatchFlow, BatchFlowError, Target } from "effect-batchflow"
import { makeFastValidator, makeReferenceValidator } from "../src/internal/rows/validate.js"

const Row = Schema.Struct({
  id: Schema.Number,
  name: Schema.String,
  active: Schema.Boolean,
  note: Schema.optional(Schema.String)
})
const Rows = Target.make("rows", { schema: Row, key: ["id"] })

const good = (id: number) => ({ id, name: `n${id}`, active: true })

/** Checks a row against the target and returns the `InvalidRow` (failing the test if it was accepted). */
const rejected = (row: unknown): BatchFlowError.InvalidRow => {
  const error = Rows.validate(row)
  expect(error, `expected ${String(row)} to be rejected`).toBeInstanceOf(BatchFlowError.InvalidRow)
  return error!
}

/** Starts a flow over an in-memory executor in its own scope; `close` closes it under the TestClock. */
const startFlow = (options: Parameters<typeof BatchFlow.layer>[0] = {}) =>
  Effect.gen(function* () {
    const memory = BatchExecutor.memory()
    const scope = yield* Scope.make()
    const ctx = yield* Layer.buildWithScope(
      BatchFlow.layer(options).pipe(Layer.provide(BatchExecutor.layerMemory(memory))),
      scope
    )
    const flow = Context.get(ctx, BatchFlow.BatchFlow)
    const close = Effect.gen(function* () {
      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      yield* TestClock.adjust("1 minute")
      yield* Fiber.join(closing)
    })
    return { flow, memory, close }
  })

describe("InvalidRow names the field and the problem", () => {
  it("a missing required field is reported as missing", () => {
    const error = rejected({ id: 1, active: true })
    expect(error.target).toBe("rows")
    expect(error.field).toBe("name")
    expect(error.problem).toBe("missing")
    expect(error.message).toContain('field "name" is missing')
  })

  it("a required field set to undefined is reported as missing", () => {
    const error = rejected({ id: 1, name: undefined, active: true })
    expect(error.field).toBe("name")
    expect(error.problem).toBe("missing")
  })

  it("a field the schema does not declare is reported as extra", () => {
    const error = rejected({ ...good(1), color: "red" })
    expect(error.field).toBe("color")
    expect(error.problem).toBe("extra")
    expect(error.message).toContain('field "color" is not declared by the schema')
  })

  it("a value of the wrong type is reported as wrong_type with the expected and the given type, not the value", () => {
    const error = rejected({ id: 1, name: 4242, active: true })
    expect(error.field).toBe("name")
    expect(error.problem).toBe("wrong_type")
    expect(error.detail).toBe("expected a string, got number")
    expect(error.message).not.toContain("4242")
    expect(rejected({ id: "1", name: "a", active: true })).toMatchObject({
      field: "id",
      problem: "wrong_type"
    })
    expect(rejected({ id: 1, name: "a", active: "yes" })).toMatchObject({
      field: "active",
      problem: "wrong_type"
    })
    expect(rejected({ ...good(1), note: 5 })).toMatchObject({ field: "note", problem: "wrong_type" })
  })

  it("NaN, Infinity and -Infinity are reported as not_finite", () => {
    for (const value of [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY]) {
      const error = rejected({ id: value, name: "a", active: true })
      expect(error.field).toBe("id")
      expect(error.problem).toBe("not_finite")
      expect(error.detail).toBe("got a non-finite number")
      expect(error.message).not.toContain(String(value))
      expect(error.message).toContain('field "id" is not a finite number')
    }
  })

  it("NaN is rejected even in a field typed Unknown", () => {
    const Loose = Target.make("loose", { schema: Schema.Struct({ payload: Schema.Unknown }) })
    expect(Loose.validate({ payload: Number.NaN })).toMatchObject({ field: "payload", problem: "not_finite" })
    expect(Loose.validate({ payload: 1 })).toBeUndefined()
  })

  it("an invalid Date is reported as invalid_date, in a Date field and in a field typed Unknown", () => {
    const Events = Target.make("events", {
      schema: Schema.Struct({ at: Schema.DateFromSelf, extra: Schema.Unknown })
    })
    expect(Events.validate({ at: new Date("not a date"), extra: 1 })).toMatchObject({
      field: "at",
      problem: "invalid_date"
    })
    expect(Events.validate({ at: new Date(0), extra: new Date(Number.NaN) })).toMatchObject({
      field: "extra",
      problem: "invalid_date"
    })
    expect(Events.validate({ at: new Date(0), extra: new Date(1) })).toBeUndefined()
  })

  it("a string with a lone UTF-16 surrogate is reported as lone_surrogate; pairs (emoji) are fine", () => {
    const Notes = Target.make("notes", {
      schema: Schema.Struct({ text: Schema.String, tag: Schema.optional(Schema.String) })
    })
    expect(Notes.validate({ text: "half \uD83D of an emoji" })).toMatchObject({
      field: "text",
      problem: "lone_surrogate"
    })
    expect(Notes.validate({ text: "ok", tag: "\uDE00" })).toMatchObject({
      field: "tag",
      problem: "lone_surrogate"
    })
    expect(Notes.validate({ text: "a whole emoji: \uD83D\uDE00" })).toBeUndefined()
    expect(rejected({ id: 1, name: "\uD800", active: true }).message).toContain("lone UTF-16 surrogate")
  })

  it("null, arrays, strings and numbers are reported as not_an_object with an empty field", () => {
    const cases: ReadonlyArray<readonly [unknown, string]> = [
      [null, "null"],
      [[1, "a", true], "an array"],
      ["row", "string"],
      [7, "number"],
      [undefined, "undefined"]
    ]
    for (const [row, described] of cases) {
      const error = rejected(row)
      expect(error.field).toBe("")
      expect(error.problem).toBe("not_an_object")
      expect(error.detail).toContain(described)
      expect(error.message).toContain("the row is not an object")
    }
  })

  it("an array is not an object even when every field of the schema is optional", () => {
    const AllOptional = Target.make("all_optional", {
      schema: Schema.Struct({ a: Schema.optional(Schema.String) })
    })
    expect(AllOptional.validate({})).toBeUndefined()
    expect(AllOptional.validate([])).toMatchObject({ field: "", problem: "not_an_object" })
  })

  it("a nested field is named by its path", () => {
    const Nested = Target.make("nested", {
      schema: Schema.Struct({ id: Schema.Number, address: Schema.Struct({ city: Schema.String }) })
    })
    expect(Nested.validate({ id: 1, address: { city: 3 } })).toMatchObject({
      field: "address.city",
      problem: "wrong_type"
    })
    expect(Nested.validate({ id: 1, address: {} })).toMatchObject({
      field: "address.city",
      problem: "missing"
    })
  })

  it.effect("submit and write fail with the typed InvalidRow and enqueue nothing", () =>
    Effect.gen(function* () {
      const { flow, memory, close } = yield* startFlow()
      const submitted = yield* Effect.flip(flow.submit(Rows, { id: 1, name: 2, active: true } as never))
      expect(submitted).toBeInstanceOf(BatchFlowError.InvalidRow)
      expect(submitted).toMatchObject({ _tag: "InvalidRow", field: "name", problem: "wrong_type" })
      const written = yield* Effect.flip(flow.write(Rows, { id: Number.NaN, name: "x", active: true }))
      expect(written).toMatchObject({ _tag: "InvalidRow", field: "id", problem: "not_finite" })
      expect((yield* flow.stats).accepted).toBe(0)
      yield* close
      expect(memory.rowCount()).toBe(0)
    })
  )

  it.effect("a rejected row leaves the other rows of the same flow unaffected", () =>
    Effect.gen(function* () {
      const { flow, memory, close } = yield* startFlow({ flushSize: 2 })
      yield* flow.submit(Rows, good(1))
      const bad = yield* Effect.flip(flow.submit(Rows, { ...good(2), extra: 1 } as never))
      expect(bad).toMatchObject({ field: "extra", problem: "extra" })
      yield* flow.submit(Rows, good(3))
      const writer = yield* Effect.fork(flow.write(Rows, good(4)))
      yield* flow.submit(Rows, { id: 5, name: "five", active: false, note: "ok" })
      yield* flow.flush.pipe(
        Effect.fork,
        Effect.tap(() => TestClock.adjust("1 second")),
        Effect.flatMap(Fiber.join)
      )
      yield* Fiber.join(writer)
      yield* close
      const ids = memory.rowsOf("rows").map((row) => (row as { id: number }).id)
      expect([...ids].sort()).toEqual([1, 3, 4, 5])
      const stats = yield* flow.stats
      expect(stats.accepted).toBe(4)
      expect(stats.committed).toBe(4)
      expect(stats.failed).toBe(0)
    })
  )

  it.effect("submitAll rejects the whole call with the index of the first bad row", () =>
    Effect.gen(function* () {
      const { flow, memory, close } = yield* startFlow()
      const rows = [
        good(1),
        good(2),
        { id: 3, name: "c" },
        good(4),
        { id: Number.NaN, name: "e", active: true }
      ]
      const error = yield* Effect.flip(flow.submitAll(Rows, rows as never))
      expect(error).toBeInstanceOf(BatchFlowError.InvalidRow)
      expect(error).toMatchObject({ index: 2, field: "active", problem: "missing", target: "rows" })
      expect(error.message).toContain("(row 2)")
      expect((yield* flow.stats).accepted).toBe(0)
      yield* flow.submitAll(Rows, [good(10), good(11)])
      yield* close
      expect(memory.rowsOf("rows")).toEqual([good(10), good(11)])
    })
  )
})

/** A schema with rows that must be accepted and rows that must be rejected. */
interface Case {
  readonly name: string
  readonly schema: Schema.Schema.AnyNoContext
  readonly valid: ReadonlyArray<unknown>
  readonly invalid: ReadonlyArray<unknown>
}

class User extends Schema.Class<User>("User")({ id: Schema.Number, name: Schema.String }) {}

const sym = Symbol("extra")

const cases: ReadonlyArray<Case> = [
  {
    name: "primitives (String, Number, Boolean, BigInt)",
    schema: Schema.Struct({
      s: Schema.String,
      n: Schema.Number,
      b: Schema.Boolean,
      big: Schema.BigIntFromSelf
    }),
    valid: [
      { s: "", n: 0, b: false, big: 0n },
      { s: "x", n: -1.5, b: true, big: 10n ** 30n },
      // Symbol keys are not row data: ignored, not extra fields.
      { s: "x", n: 1, b: true, big: 1n, [sym]: 1 }
    ],
    invalid: [
      {},
      { s: "x", n: 1, b: true },
      { s: "x", n: 1, b: true, big: 1 },
      { s: "x", n: "1", b: true, big: 1n },
      { s: 1, n: 1, b: true, big: 1n },
      { s: "x", n: 1, b: 0, big: 1n },
      { s: "x", n: Number.NaN, b: true, big: 1n },
      { s: "x", n: Number.POSITIVE_INFINITY, b: true, big: 1n },
      { s: "x", n: 1, b: true, big: 1n, more: 1 },
      { s: "x", n: 1, b: true, big: 1n, u: undefined },
      null,
      [],
      "x",
      42
    ]
  },
  {
    name: "Literal unions",
    schema: Schema.Struct({ kind: Schema.Literal("a", "b"), level: Schema.Literal(1, 2, 3) }),
    valid: [
      { kind: "a", level: 1 },
      { kind: "b", level: 3 }
    ],
    invalid: [
      { kind: "c", level: 1 },
      { kind: "a", level: 4 },
      { kind: "a", level: "1" },
      { kind: "A", level: 1 },
      { kind: "a" }
    ]
  },
  {
    name: "Int and Positive refinements",
    schema: Schema.Struct({
      count: Schema.Int,
      price: Schema.Positive,
      qty: Schema.Int.pipe(Schema.positive())
    }),
    valid: [
      { count: 0, price: 0.5, qty: 1 },
      { count: -3, price: 1e9, qty: 42 }
    ],
    invalid: [
      { count: 1.5, price: 1, qty: 1 },
      { count: 1, price: 0, qty: 1 },
      { count: 1, price: -2, qty: 1 },
      { count: 1, price: 1, qty: 0 },
      { count: 1, price: 1, qty: 2.5 },
      { count: Number.NaN, price: 1, qty: 1 },
      { count: 1, price: Number.POSITIVE_INFINITY, qty: 1 },
      { count: "1", price: 1, qty: 1 }
    ]
  },
  {
    name: "optional fields",
    schema: Schema.Struct({
      a: Schema.String,
      b: Schema.optional(Schema.Number),
      c: Schema.optionalWith(Schema.String, { exact: true })
    }),
    valid: [
      { a: "x" },
      { a: "x", b: 1 },
      { a: "x", b: undefined },
      { a: "x", c: "y" },
      { a: "x", b: 2, c: "z" }
    ],
    invalid: [
      { b: 1 },
      { a: "x", b: "1" },
      { a: "x", c: undefined },
      { a: "x", c: 1 },
      { a: "x", b: Number.NaN },
      { a: "x", d: 1 }
    ]
  },
  {
    name: "NullOr",
    schema: Schema.Struct({ x: Schema.NullOr(Schema.Number), y: Schema.NullOr(Schema.String) }),
    valid: [
      { x: null, y: null },
      { x: 1, y: "a" }
    ],
    invalid: [{ x: undefined, y: null }, { x: "1", y: null }, { x: null }, { x: Number.NaN, y: null }]
  },
  {
    name: "Date (DateFromSelf)",
    schema: Schema.Struct({ id: Schema.Number, at: Schema.DateFromSelf }),
    valid: [{ id: 1, at: new Date(0) }],
    invalid: [{ id: 1, at: "2024-01-01" }, { id: 1, at: 0 }, { id: 1, at: null }, { id: 1 }]
  },
  {
    name: "nested struct",
    schema: Schema.Struct({
      id: Schema.Number,
      address: Schema.Struct({ city: Schema.String, zip: Schema.optional(Schema.String) })
    }),
    valid: [
      { id: 1, address: { city: "Paris" } },
      { id: 2, address: { city: "Lyon", zip: "69000" } }
    ],
    invalid: [
      { id: 1, address: { city: 1 } },
      { id: 1, address: {} },
      { id: 1, address: null },
      { id: 1, address: "Paris" },
      { id: 1, address: { city: "Paris", country: "FR" } },
      { id: 1, address: { city: "Paris" }, more: true }
    ]
  },
  {
    name: "all fields optional",
    schema: Schema.Struct({ a: Schema.optional(Schema.String), b: Schema.optional(Schema.Number) }),
    valid: [{}, { a: "x" }, { b: 1 }],
    invalid: [[], { a: 1 }, { c: 1 }, null]
  },
  {
    name: "Schema.Class",
    schema: User,
    valid: [new User({ id: 1, name: "a" })],
    invalid: [{ id: 1, name: "a" }, { id: 1 }, null, [], new Date(0)]
  }
]

describe("fast path and Schema agree", () => {
  for (const c of cases) {
    it(`${c.name}: the fast checker, the reference validator and the target give the same verdicts`, () => {
      const fast = makeFastValidator(c.schema)
      const reference = makeReferenceValidator(c.schema)
      const target = Target.make("t", { schema: c.schema })
      const verdicts = (row: unknown) => ({
        fast: fast(row),
        reference: reference(row),
        target: target.validate(row) === undefined
      })
      for (const row of c.valid) {
        expect(verdicts(row), `valid row ${describeRow(row)}`).toEqual({
          fast: true,
          reference: true,
          target: true
        })
      }
      for (const row of c.invalid) {
        expect(verdicts(row), `invalid row ${describeRow(row)}`).toEqual({
          fast: false,
          reference: false,
          target: false
        })
        expect(target.validate(row)).toBeInstanceOf(BatchFlowError.InvalidRow)
      }
    })
  }
})

const describeRow = (row: unknown): string => {
  const symbols =
    typeof row === "object" && row !== null ? Object.getOwnPropertySymbols(row).map(String).join(", ") : ""
  let text: string
  try {
    text = JSON.stringify(row, (_, v) => (typeof v === "bigint" ? `${v}n` : v)) ?? String(row)
  } catch {
    text = String(row)
  }
  return symbols === "" ? text : `${text} with symbol keys ${symbols}`
}
