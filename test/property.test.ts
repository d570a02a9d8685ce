import { describe, expect, it } from "@effect/vitest"
import {
  Arbitrary,
  Cause,
  Chunk,
  Context,
  Effect,
  Exit,
  Fiber,
  FastCheck as fc,
  Layer,
  Option,
  Schema,
  Scope,
  Stream,
  TestClock
} from "effect"
import {
  BatchExecutor,
  BatchFlow,
  type BatchFlowConfig,
  BatchFlowError,
  type Retry,
  Target
} from "effect-batchflow"
import { makeFastValidator, makeReferenceValidator } from "../src/internal/rows/validate.js"

// ---------------------------------------------------------------- validators: fast path vs Schema

/** Values that break rows: non-finite numbers, wrong types, nested junk. */
const weird: fc.Arbitrary<unknown> = fc.oneof(
  fc.constantFrom(
    Number.NaN,
    Number.POSITIVE_INFINITY,
    Number.NEGATIVE_INFINITY,
    undefined,
    null,
    -0,
    "",
    [],
    {}
  ),
  fc.integer(),
  fc.double(),
  fc.string(),
  fc.boolean(),
  fc.bigInt(),
  fc.date(),
  fc.anything({ maxDepth: 2, withBigInt: true, withDate: true })
)

interface Mutation {
  readonly kind: "delete" | "extra" | "set"
  readonly pick: number
  readonly key: string
  readonly value: unknown
  /** Apply to a nested object of the row (when there is one) rather than the row itself. */
  readonly deep: boolean
}

const mutation: fc.Arbitrary<Mutation> = fc.record({
  kind: fc.constantFrom("delete", "extra", "set"),
  pick: fc.nat(),
  key: fc.oneof(fc.string({ maxLength: 6 }), fc.constantFrom("id", "name", "x", "inner")),
  value: weird,
  deep: fc.boolean()
})

const isPlainObject = (u: unknown): u is Record<string, unknown> =>
  typeof u === "object" && u !== null && !Array.isArray(u) && Object.getPrototypeOf(u) === Object.prototype

const applyMutations = (row: unknown, mutations: ReadonlyArray<Mutation>): unknown => {
  if (!isPlainObject(row)) return row
  const copy: Record<string, unknown> = { ...row }
  for (const m of mutations) {
    let target = copy
    if (m.deep) {
      const nestedKey = Object.keys(copy).find((k) => isPlainObject(copy[k]))
      if (nestedKey !== undefined) {
        target = { ...(copy[nestedKey] as Record<string, unknown>) }
        copy[nestedKey] = target
      }
    }
    const keys = Object.keys(target)
    const existing = keys.length === 0 ? undefined : keys[m.pick % keys.length]!
    switch (m.kind) {
      case "delete":
        if (existing !== undefined) delete target[existing]
        break
      case "extra":
        target[m.key] = m.value
        break
      case "set":
        if (existing !== undefined) target[existing] = m.value
        break
    }
  }
  return copy
}

/** Valid rows from the schema, the same rows mutated, and arbitrary values. */
const rowsFor = (schema: Schema.Schema.AnyNoContext): fc.Arbitrary<unknown> => {
  const valid = Arbitrary.make(schema) as fc.Arbitrary<unknown>
  return fc.oneof(
    valid,
    fc
      .tuple(valid, fc.array(mutation, { minLength: 1, maxLength: 3 }))
      .map(([row, ms]) => applyMutations(row, ms)),
    weird
  )
}

const verdicts = (schema: Schema.Schema.AnyNoContext) => {
  const fast = makeFastValidator(schema)
  const reference = makeReferenceValidator(schema)
  const target = Target.make("t", { schema })
  return (row: unknown) => ({
    fast: fast(row),
    reference: reference(row),
    target: target.validate(row) === undefined
  })
}

const Flat = Schema.Struct({
  id: Schema.Number,
  name: Schema.String,
  active: Schema.Boolean,
  level: Schema.Literal(1, 2, 3),
  score: Schema.optional(Schema.Int),
  note: Schema.NullOr(Schema.String)
})

const Refined = Schema.Struct({
  count: Schema.Int.pipe(Schema.positive()),
  price: Schema.Positive,
  big: Schema.BigIntFromSelf,
  kind: Schema.Literal("a", "b"),
  at: Schema.optionalWith(Schema.DateFromSelf, { exact: true })
})

const Nested = Schema.Struct({
  id: Schema.Number,
  inner: Schema.Struct({ x: Schema.Number, y: Schema.optional(Schema.String) })
})

describe("validators: the fast path and the Schema reference give the same verdict", () => {
  const agree =
    (schema: Schema.Schema.AnyNoContext) =>
    ([row]: [unknown]) => {
      const v = verdicts(schema)(row)
      expect(v.fast).toBe(v.reference)
      expect(v.target).toBe(v.reference)
    }

  it.prop("flat struct of primitives, literals, optional and NullOr fields", [rowsFor(Flat)], agree(Flat), {
    fastCheck: { numRuns: 2000 }
  })

  it.prop("refinements (Int, Positive), BigInt and exact optional Date", [rowsFor(Refined)], agree(Refined), {
    fastCheck: { numRuns: 2000 }
  })

  it.prop("nested struct", [rowsFor(Nested)], agree(Nested), { fastCheck: { numRuns: 2000 } })

  // Schema.Number admits NaN and ±Infinity, which every path rejects (not_finite): keep finite rows.
  const finiteFlat = (Arbitrary.make(Flat) as fc.Arbitrary<Record<string, unknown>>).filter((row) =>
    Object.values(row).every((v) => typeof v !== "number" || Number.isFinite(v))
  )

  it.prop("valid rows generated from the schema are accepted by every path", [finiteFlat], ([row]) => {
    expect(verdicts(Flat)(row)).toEqual({ fast: true, reference: true, target: true })
  })
})

// ---------------------------------------------------------------- engine: nothing lost, nothing duplicated

const RowSchema = Schema.Struct({ id: Schema.Number, k: Schema.Number })
type Row = typeof RowSchema.Type

/** An ordered target with a key, an unkeyed one, and a keyed one without ordering. */
const targets = [
  Target.make("keyed", { schema: RowSchema, key: ["k"] }),
  Target.make("plain", { schema: RowSchema }),
  Target.make("unordered", { schema: RowSchema, key: ["k"], ordered: false })
] as const

type Outcome = "ok" | "retryable" | "fatal" | "defect" | "row_level" | "hang"

class RowProblem extends Schema.TaggedError<RowProblem>()("RowProblem", {}) {}

const rowLevelRule: Retry.Rule = (e) =>
  e instanceof RowProblem ? { retryable: false, reason: "row_level", rowLevel: true } : undefined

type Op =
  | { readonly _tag: "submit"; readonly target: number; readonly count: number }
  | { readonly _tag: "submitAll"; readonly target: number; readonly count: number }
  | { readonly _tag: "write"; readonly target: number; readonly count: number }
  | { readonly _tag: "flush" }
  | { readonly _tag: "advance"; readonly millis: number }

const op: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      _tag: fc.constant("submit" as const),
      target: fc.nat(2),
      count: fc.integer({ min: 1, max: 6 })
    })
  },
  {
    weight: 2,
    arbitrary: fc.record({
      _tag: fc.constant("submitAll" as const),
      target: fc.nat(2),
      count: fc.integer({ min: 1, max: 12 })
    })
  },
  {
    weight: 2,
    arbitrary: fc.record({
      _tag: fc.constant("write" as const),
      target: fc.nat(2),
      count: fc.integer({ min: 1, max: 4 })
    })
  },
  { weight: 1, arbitrary: fc.constant({ _tag: "flush" as const }) },
  {
    weight: 2,
    arbitrary: fc.record({ _tag: fc.constant("advance" as const), millis: fc.integer({ min: 0, max: 40 }) })
  }
)

const outcome: fc.Arbitrary<Outcome> = fc.constantFrom<Outcome>(
  "ok",
  "ok",
  "ok",
  "retryable",
  "fatal",
  "defect",
  "row_level",
  "hang"
)

interface Scenario {
  readonly flushSize: number
  readonly extraBuffer: number
  readonly concurrency: number
  readonly maxAttempts: number
  readonly targetCount: number
  readonly outcomes: ReadonlyArray<Outcome>
  readonly ops: ReadonlyArray<Op>
}

const scenario: fc.Arbitrary<Scenario> = fc.record({
  flushSize: fc.integer({ min: 1, max: 8 }),
  extraBuffer: fc.integer({ min: 0, max: 12 }),
  concurrency: fc.integer({ min: 1, max: 4 }),
  maxAttempts: fc.integer({ min: 1, max: 3 }),
  targetCount: fc.integer({ min: 1, max: 3 }),
  outcomes: fc.array(outcome, { minLength: 1, maxLength: 16 }),
  ops: fc.array(op, { minLength: 1, maxLength: 25 })
})

type Call =
  | {
      readonly _tag: "submit"
      readonly rows: ReadonlyArray<Row>
      readonly fiber: Fiber.RuntimeFiber<ReadonlyArray<Exit.Exit<void, unknown>>>
    }
  | {
      readonly _tag: "submitAll"
      readonly rows: ReadonlyArray<Row>
      readonly fiber: Fiber.RuntimeFiber<Exit.Exit<void, unknown>>
    }
  | {
      readonly _tag: "write"
      readonly row: Row
      readonly fiber: Fiber.RuntimeFiber<Exit.Exit<void, unknown>>
    }
  | { readonly _tag: "flush"; readonly fiber: Fiber.RuntimeFiber<void> }

/**
 * Runs one scenario under the TestClock and checks that every accepted row was either committed
 * exactly once or reported in exactly one BatchFailure, and that every caller got the matching answer.
 */
const runScenario = (s: Scenario, closeTimeout: number, timeout: number) =>
  Effect.gen(function* () {
    const committed: Array<number> = []
    let call = 0
    const executor = BatchExecutor.make(
      (_target, rows) =>
        Effect.suspend((): Effect.Effect<void, unknown> => {
          const o = s.outcomes[call++ % s.outcomes.length]!
          switch (o) {
            case "ok":
              for (const row of rows) committed.push((row as Row).id)
              return Effect.void
            case "retryable":
              return Effect.fail(
                new BatchFlowError.ExecutorError({ message: "busy", retryable: true, reason: "busy" })
              )
            case "fatal":
              return Effect.fail(
                new BatchFlowError.ExecutorError({ message: "no", retryable: false, reason: "fatal" })
              )
            case "defect":
              return Effect.die(new Error("executor bug"))
            case "row_level":
              return Effect.fail(new RowProblem())
            case "hang":
              return Effect.never
          }
        }),
      { rules: [rowLevelRule] }
    )
    const options: BatchFlowConfig.Options = {
      flushSize: s.flushSize,
      bufferSize: s.flushSize + s.extraBuffer,
      concurrency: s.concurrency,
      flushInterval: "10 millis",
      timeout,
      closeTimeout,
      failureBufferSize: 100_000,
      retry: { maxAttempts: s.maxAttempts, backoffBase: "5 millis", maxBackoff: "20 millis", jitter: 0.5 }
    }
    const scope = yield* Scope.make()
    const ctx = yield* Layer.buildWithScope(
      BatchFlow.layer(options).pipe(Layer.provide(Layer.succeed(BatchExecutor.BatchExecutor, executor))),
      scope
    )
    const flow = Context.get(ctx, BatchFlow.BatchFlow)
    const failuresFiber = yield* Effect.fork(Stream.runCollect(flow.failures))

    let nextId = 0
    const targetOf = new Map<number, string>()
    const newRows = (target: number, count: number): Array<Row> =>
      Array.from({ length: count }, () => {
        const id = nextId++
        targetOf.set(id, targets[target % s.targetCount]!.name)
        return { id, k: id % 4 }
      })
    const calls: Array<Call> = []
    for (const o of s.ops) {
      switch (o._tag) {
        case "submit": {
          const t = targets[o.target % s.targetCount]!
          const rows = newRows(o.target, o.count)
          const fiber = yield* Effect.fork(Effect.forEach(rows, (row) => Effect.exit(flow.submit(t, row))))
          calls.push({ _tag: "submit", rows, fiber })
          break
        }
        case "submitAll": {
          const t = targets[o.target % s.targetCount]!
          const rows = newRows(o.target, o.count)
          calls.push({
            _tag: "submitAll",
            rows,
            fiber: yield* Effect.fork(Effect.exit(flow.submitAll(t, rows)))
          })
          break
        }
        case "write": {
          const t = targets[o.target % s.targetCount]!
          for (const row of newRows(o.target, o.count)) {
            calls.push({ _tag: "write", row, fiber: yield* Effect.fork(Effect.exit(flow.write(t, row))) })
          }
          break
        }
        case "flush":
          calls.push({ _tag: "flush", fiber: yield* Effect.fork(flow.flush) })
          break
        case "advance":
          yield* TestClock.adjust(o.millis)
          break
      }
    }

    // A daemon: should closing get stuck, the test fails here instead of hanging on its child fiber.
    const closing = yield* Effect.forkDaemon(Scope.close(scope, Exit.void))
    for (let i = 0; i < 5 && Option.isNone(yield* Fiber.poll(closing)); i++)
      yield* TestClock.adjust("2 minutes")
    expect(Option.isSome(yield* Fiber.poll(closing)), "close finished within closeTimeout").toBe(true)

    // Every caller got an answer by the time the flow is closed.
    const stuck: Array<string> = []
    for (const c of calls) {
      const fiber: Fiber.RuntimeFiber<unknown> = c.fiber
      if (Option.isNone(yield* Fiber.poll(fiber))) {
        stuck.push(c._tag === "write" ? `write of row ${c.row.id}` : c._tag)
        yield* Fiber.interrupt(fiber)
      }
    }
    expect(stuck, "calls still waiting after close").toEqual([])

    const failures = Chunk.toArray(yield* Fiber.join(failuresFiber))
    const failedIds = failures.flatMap((f) => f.rows.map((r) => (r as Row).id))
    for (const f of failures) {
      for (const r of f.rows) expect(f.target).toBe(targetOf.get((r as Row).id))
    }

    // No duplicates: committed once, reported once, never both.
    const committedSet = new Set(committed)
    const failedSet = new Set(failedIds)
    expect(committed.length, "a row was committed twice").toBe(committedSet.size)
    expect(failedIds.length, "a row was reported twice").toBe(failedSet.size)
    expect(
      committed.filter((id) => failedSet.has(id)),
      "rows both committed and reported"
    ).toEqual([])
    const settled = new Set([...committed, ...failedIds])
    for (const id of settled) expect(targetOf.has(id)).toBe(true)

    // Nothing lost: each accepted row is settled; rejected rows never reach the executor.
    const accepted = new Set<number>()
    for (const c of calls) {
      switch (c._tag) {
        case "submit": {
          const exits = yield* Fiber.join(c.fiber)
          exits.forEach((exit, i) => {
            const id = c.rows[i]!.id
            if (Exit.isSuccess(exit)) accepted.add(id)
            else {
              expect(Cause.failureOption(exit.cause)).toMatchObject(Option.some({ _tag: "BatchFlowClosed" }))
              expect(settled.has(id), `row ${id} rejected at submit but written`).toBe(false)
            }
          })
          break
        }
        case "submitAll": {
          const exit = yield* Fiber.join(c.fiber)
          if (Exit.isSuccess(exit)) for (const row of c.rows) accepted.add(row.id)
          else {
            expect(Cause.failureOption(exit.cause)).toMatchObject(Option.some({ _tag: "BatchFlowClosed" }))
            // A call bigger than the buffer may have been accepted in part: a prefix.
            const taken = c.rows.map((row) => settled.has(row.id))
            const prefix = taken.indexOf(false) === -1 ? taken.length : taken.indexOf(false)
            expect(
              taken.slice(prefix).every((t) => !t),
              "submitAll accepted a non-prefix"
            ).toBe(true)
            for (const row of c.rows.slice(0, prefix)) accepted.add(row.id)
          }
          break
        }
        case "write": {
          const exit = yield* Fiber.join(c.fiber)
          const id = c.row.id
          if (Exit.isSuccess(exit)) {
            accepted.add(id)
            expect(committedSet.has(id), `write of row ${id} succeeded but the row was not committed`).toBe(
              true
            )
          } else {
            const error = Option.getOrThrow(Cause.failureOption(exit.cause)) as { _tag: string }
            if (error._tag === "BatchFailure") {
              accepted.add(id)
              expect(failedSet.has(id), `write of row ${id} failed but the row was not reported`).toBe(true)
              expect((error as BatchFlowError.BatchFailure).rows.map((r) => (r as Row).id)).toContain(id)
            } else {
              expect(error._tag).toBe("BatchFlowClosed")
              expect(settled.has(id)).toBe(false)
            }
          }
          break
        }
        case "flush":
          yield* Fiber.join(c.fiber)
          break
      }
    }
    const lost = [...accepted].filter((id) => !settled.has(id))
    expect(lost, "accepted rows neither committed nor reported").toEqual([])
    expect(settled.size).toBe(accepted.size)

    const stats = yield* flow.stats
    const rowsWith = (outcome: string) =>
      failures.filter((f) => f.outcome === outcome).reduce((n, f) => n + f.rows.length, 0)
    // A report is unknown_outcome exactly when its reason is.
    for (const f of failures) expect(f.outcome === "unknown_outcome").toBe(f.reason === "unknown_outcome")
    expect(stats).toMatchObject({
      accepted: accepted.size,
      committed: committed.length,
      failed: rowsWith("failed"),
      unknownOutcome: rowsWith("unknown_outcome"),
      buffered: 0,
      inFlight: 0,
      droppedFailures: 0
    })
    expect(yield* flow.isDone).toBe(true)
  })

describe("engine: every accepted row is committed once or reported once", () => {
  it.effect.prop(
    "random submits, writes, flushes and executor failures; closed with time to finish",
    [scenario],
    ([s]) => runScenario(s, 60_000, 30),
    { fastCheck: { numRuns: 50 } }
  )

  it.effect.prop(
    "random submits, writes, flushes and executor failures; hung writes cut by a short closeTimeout",
    [scenario],
    ([s]) => runScenario(s, 40, Number.POSITIVE_INFINITY),
    { fastCheck: { numRuns: 50 } }
  )
})

describe("close timeout: rows not written in time are reported, never lost", () => {
  const start = (options: BatchFlowConfig.Options, executor: BatchExecutor.BatchExecutor) =>
    Effect.gen(function* () {
      const scope = yield* Scope.make()
      const ctx = yield* Layer.buildWithScope(
        BatchFlow.layer(options).pipe(Layer.provide(Layer.succeed(BatchExecutor.BatchExecutor, executor))),
        scope
      )
      const flow = Context.get(ctx, BatchFlow.BatchFlow)
      const failures = yield* Effect.fork(Stream.runCollect(flow.failures))
      const close = Effect.gen(function* () {
        const closing = yield* Effect.forkDaemon(Scope.close(scope, Exit.void))
        yield* TestClock.adjust("1 minute")
        expect(Option.isSome(yield* Fiber.poll(closing)), "close finished within closeTimeout").toBe(true)
        return Chunk.toArray(yield* Fiber.join(failures))
      })
      return { flow, close }
    })

  it.effect("a group waiting behind an unfinished group with the same key is reported", () =>
    Effect.gen(function* () {
      const executor = BatchExecutor.make(() => Effect.never)
      const { flow, close } = yield* start(
        { flushSize: 1, concurrency: 2, closeTimeout: "1 second", timeout: Infinity },
        executor
      )
      const keyed = targets[0]
      yield* flow.submit(keyed, { id: 1, k: 1 })
      yield* flow.submit(keyed, { id: 2, k: 1 })
      yield* TestClock.adjust("10 millis")
      const failures = yield* close
      const reported = failures.flatMap((f) => f.rows.map((r) => (r as Row).id)).sort()
      expect(reported).toEqual([1, 2])
      // Row 1's write was running (maybe written); row 2 waited behind it and was never sent.
      expect(failures.map((f) => [(f.rows[0] as Row).id, f.reason]).sort()).toEqual([
        [1, "unknown_outcome"],
        [2, "close_timeout"]
      ])
      expect(yield* flow.stats).toMatchObject({
        accepted: 2,
        committed: 0,
        failed: 1,
        unknownOutcome: 1,
        inFlight: 0
      })
    })
  )

  it.effect("the not-yet-started half of a batch split by a row-level error is reported", () =>
    Effect.gen(function* () {
      const committed: Array<number> = []
      const executor = BatchExecutor.make(
        (_target, rows) =>
          Effect.suspend(() => {
            const ids = (rows as ReadonlyArray<Row>).map((r) => r.id)
            if (ids.includes(3)) return Effect.fail(new RowProblem())
            if (ids.includes(0)) return Effect.never
            committed.push(...ids)
            return Effect.void
          }),
        { rules: [rowLevelRule] }
      )
      const { flow, close } = yield* start(
        { flushSize: 4, concurrency: 1, closeTimeout: "1 second", timeout: Infinity },
        executor
      )
      yield* flow.submitAll(
        targets[1],
        [0, 1, 2, 3].map((id) => ({ id, k: id }))
      )
      yield* TestClock.adjust("10 millis")
      const failures = yield* close
      const reported = failures.flatMap((f) => f.rows.map((r) => (r as Row).id)).sort()
      // [0, 1, 2, 3] fails row-level and splits: [0, 1] hangs until the close timeout, [2, 3] waits.
      expect([...committed, ...reported].sort()).toEqual([0, 1, 2, 3])
      // The hung half was being written: unknown; the half waiting behind it was never sent.
      expect(failures.map((f) => [f.rows.map((r) => (r as Row).id), f.reason])).toEqual(
        expect.arrayContaining([[[0, 1], "unknown_outcome"]])
      )
      const stats = yield* flow.stats
      expect(stats).toMatchObject({ accepted: 4, unknownOutcome: 2, inFlight: 0 })
      expect(stats.failed + stats.unknownOutcome).toBe(reported.length)
    })
  )

  it.effect("hung writes of several targets in one flush are cut off by closeTimeout", () =>
    Effect.gen(function* () {
      const executor = BatchExecutor.make(() => Effect.never)
      const { flow, close } = yield* start(
        { flushSize: 2, concurrency: 1, closeTimeout: "1 second", timeout: Infinity },
        executor
      )
      yield* flow.submit(targets[1], { id: 1, k: 1 })
      yield* flow.submit(targets[2], { id: 2, k: 2 })
      yield* TestClock.adjust("10 millis")
      const failures = yield* close
      expect(failures.map((f) => [f.target, f.reason, (f.rows[0] as Row).id]).sort()).toEqual([
        ["plain", "unknown_outcome", 1],
        // concurrency 1: the second group waited for the permit and was never sent.
        ["unordered", "close_timeout", 2]
      ])
      expect(yield* flow.stats).toMatchObject({
        accepted: 2,
        committed: 0,
        failed: 1,
        unknownOutcome: 1,
        inFlight: 0
      })
    })
  )
})
