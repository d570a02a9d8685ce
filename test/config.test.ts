import { describe, expect, it } from "@effect/vitest"
import {
  ConfigError,
  ConfigProvider,
  Context,
  Duration,
  Effect,
  Either,
  Exit,
  Fiber,
  Layer,
  Schema,
  Scope,
  TestClock
} from "effect"
import { BatchExecutor, BatchFlow, BatchFlowConfig, BatchFlowError, Target } from "effect-batchflow"

const Events = Target.make("events", { schema: Schema.Struct({ id: Schema.Number }) })

/** The environment as the default provider reads it: `BATCHFLOW_*` keys, path segments joined by `_`. */
const env = (entries: Record<string, string>) =>
  ConfigProvider.fromMap(new Map(Object.entries(entries)), { pathDelim: "_" })

const invalidOf = (options: BatchFlowConfig.Options) => Effect.flip(BatchFlowConfig.make(options))

describe("defaults", () => {
  it.effect("make() with no options equals the documented defaults", () =>
    Effect.gen(function* () {
      const config = yield* BatchFlowConfig.make()
      expect(config).toEqual(BatchFlowConfig.defaults)
      expect(yield* BatchFlowConfig.make({})).toEqual(BatchFlowConfig.defaults)
      expect(config.bufferSize).toBe(10_000)
      expect(config.flushSize).toBe(500)
      expect(Duration.toMillis(config.flushInterval)).toBe(100)
      expect(config.concurrency).toBe(4)
      expect(config.retry.maxAttempts).toBe(20)
      expect(Duration.toMillis(config.retry.maxElapsed)).toBe(30_000)
      expect(Duration.toMillis(config.retry.backoffBase)).toBe(20)
      expect(Duration.toMillis(config.retry.maxBackoff)).toBe(2000)
      expect(config.retry.jitter).toBe(0.2)
      expect(Duration.toMillis(config.timeout)).toBe(30_000)
      expect(Duration.toMillis(config.closeTimeout)).toBe(30_000)
      expect(config.failureBufferSize).toBe(1024)
    })
  )

  it.effect(
    "given fields override the defaults and the others keep them; durations accept any input form",
    () =>
      Effect.gen(function* () {
        const config = yield* BatchFlowConfig.make({
          flushSize: 10,
          bufferSize: 10,
          flushInterval: "2 seconds",
          retry: { maxAttempts: 1, backoffBase: 5, jitter: 0 },
          timeout: Duration.infinity,
          closeTimeout: Duration.minutes(1)
        })
        expect(config.flushSize).toBe(10)
        expect(config.bufferSize).toBe(10)
        expect(Duration.toMillis(config.flushInterval)).toBe(2000)
        expect(config.concurrency).toBe(4)
        expect(config.retry).toEqual({
          maxAttempts: 1,
          maxElapsed: BatchFlowConfig.defaults.retry.maxElapsed,
          backoffBase: Duration.millis(5),
          maxBackoff: BatchFlowConfig.defaults.retry.maxBackoff,
          jitter: 0
        })
        expect(Duration.isFinite(config.timeout)).toBe(false)
        expect(Duration.toMillis(config.closeTimeout)).toBe(60_000)
        expect(config.failureBufferSize).toBe(1024)
      })
  )

  it.effect(
    "boundary values are accepted: jitter 0 and 1, bufferSize = flushSize, maxBackoff = backoffBase",
    () =>
      Effect.gen(function* () {
        for (const options of [
          { retry: { jitter: 0 } },
          { retry: { jitter: 1 } },
          { flushSize: 1, bufferSize: 1 },
          { retry: { backoffBase: "1 second", maxBackoff: "1 second" } },
          { concurrency: 1, failureBufferSize: 1, retry: { maxAttempts: 1 } },
          { closeTimeout: Duration.infinity }
        ] satisfies ReadonlyArray<BatchFlowConfig.Options>) {
          const result = yield* Effect.either(BatchFlowConfig.make(options))
          expect(Either.isRight(result), JSON.stringify(options)).toBe(true)
        }
      })
  )
})

describe("every invalid field fails with BatchFlowConfigError naming the field and the range", () => {
  const cases: ReadonlyArray<{
    readonly name: string
    readonly options: BatchFlowConfig.Options
    readonly field: string
    readonly expected: string
  }> = [
    { name: "flushSize 0", options: { flushSize: 0 }, field: "flushSize", expected: "an integer ≥ 1" },
    { name: "flushSize -3", options: { flushSize: -3 }, field: "flushSize", expected: "an integer ≥ 1" },
    { name: "flushSize 1.5", options: { flushSize: 1.5 }, field: "flushSize", expected: "an integer ≥ 1" },
    {
      name: "flushSize NaN",
      options: { flushSize: Number.NaN },
      field: "flushSize",
      expected: "an integer ≥ 1"
    },
    {
      name: "bufferSize < flushSize",
      options: { flushSize: 100, bufferSize: 99 },
      field: "bufferSize",
      expected: "an integer ≥ 100 (at least flushSize)"
    },
    {
      name: "bufferSize below the default flushSize",
      options: { bufferSize: 10 },
      field: "bufferSize",
      expected: "an integer ≥ 500 (at least flushSize)"
    },
    {
      name: "bufferSize not an integer",
      options: { flushSize: 1, bufferSize: 2.5 },
      field: "bufferSize",
      expected: "an integer ≥ 1"
    },
    {
      name: "flushInterval 0",
      options: { flushInterval: 0 },
      field: "flushInterval",
      expected: "a duration > 0"
    },
    {
      name: "flushInterval negative",
      options: { flushInterval: -5 },
      field: "flushInterval",
      expected: "a duration > 0"
    },
    {
      name: "flushInterval negative (string)",
      options: { flushInterval: "-5 millis" },
      field: "flushInterval",
      expected: "a duration > 0"
    },
    {
      name: "flushInterval infinite",
      options: { flushInterval: Duration.infinity },
      field: "flushInterval",
      expected: "a finite duration"
    },
    {
      name: "flushInterval not a duration",
      options: { flushInterval: "soon" as Duration.DurationInput },
      field: "flushInterval",
      expected: "a duration such as"
    },
    { name: "concurrency 0", options: { concurrency: 0 }, field: "concurrency", expected: "an integer ≥ 1" },
    {
      name: "concurrency 2.5",
      options: { concurrency: 2.5 },
      field: "concurrency",
      expected: "an integer ≥ 1"
    },
    {
      name: "retry.maxAttempts 0",
      options: { retry: { maxAttempts: 0 } },
      field: "retry.maxAttempts",
      expected: "an integer ≥ 1"
    },
    {
      name: "retry.backoffBase 0",
      options: { retry: { backoffBase: 0 } },
      field: "retry.backoffBase",
      expected: "a duration > 0"
    },
    {
      name: "retry.maxBackoff < backoffBase",
      options: { retry: { backoffBase: "1 second", maxBackoff: "500 millis" } },
      field: "retry.maxBackoff",
      expected: "a duration ≥ retry.backoffBase (1s)"
    },
    {
      name: "retry.maxBackoff 0",
      options: { retry: { maxBackoff: 0 } },
      field: "retry.maxBackoff",
      expected: "a duration > 0"
    },
    {
      name: "retry.jitter negative",
      options: { retry: { jitter: -0.1 } },
      field: "retry.jitter",
      expected: "a number from 0 to 1"
    },
    {
      name: "retry.jitter above 1",
      options: { retry: { jitter: 1.5 } },
      field: "retry.jitter",
      expected: "a number from 0 to 1"
    },
    {
      name: "retry.jitter NaN",
      options: { retry: { jitter: Number.NaN } },
      field: "retry.jitter",
      expected: "a number from 0 to 1"
    },
    { name: "timeout 0", options: { timeout: 0 }, field: "timeout", expected: "a duration > 0" },
    {
      name: "closeTimeout 0",
      options: { closeTimeout: 0 },
      field: "closeTimeout",
      expected: "a duration > 0"
    },
    {
      name: "closeTimeout negative",
      options: { closeTimeout: "-1 seconds" },
      field: "closeTimeout",
      expected: "a duration > 0"
    },
    {
      name: "failureBufferSize 0",
      options: { failureBufferSize: 0 },
      field: "failureBufferSize",
      expected: "an integer ≥ 1"
    }
  ]

  for (const c of cases) {
    it.effect(`${c.name} is rejected on field ${c.field}`, () =>
      Effect.gen(function* () {
        const error = yield* invalidOf(c.options)
        expect(error).toBeInstanceOf(BatchFlowError.BatchFlowConfigError)
        expect(error._tag).toBe("BatchFlowConfigError")
        expect(error.field).toBe(c.field)
        expect(error.expected).toContain(c.expected)
        expect(error.message).toContain(`${c.field} must be`)
        expect(error.message).toContain(c.expected)
        expect(error.message).toContain(`(got ${error.value})`)
      })
    )
  }

  it.effect("the error shows the offending value", () =>
    Effect.gen(function* () {
      expect((yield* invalidOf({ flushSize: 0 })).value).toBe("0")
      expect((yield* invalidOf({ retry: { jitter: 1.5 } })).value).toBe("1.5")
      expect((yield* invalidOf({ retry: { backoffBase: "1 second", maxBackoff: "500 millis" } })).value).toBe(
        "500ms"
      )
    })
  )

  it.effect("BatchFlow.layer with an invalid config fails at layer construction with that error", () =>
    Effect.gen(function* () {
      const memory = BatchExecutor.memory()
      const error = yield* Layer.build(
        BatchFlow.layer({ flushSize: 10, bufferSize: 5 }).pipe(
          Layer.provide(BatchExecutor.layerMemory(memory))
        )
      ).pipe(Effect.scoped, Effect.flip)
      expect(error).toBeInstanceOf(BatchFlowError.BatchFlowConfigError)
      expect(error).toMatchObject({ field: "bufferSize", value: "5" })
      expect(error.expected).toContain("≥ 10")
    })
  )

  it.effect("BatchFlow.make with an invalid config fails before starting anything", () =>
    Effect.gen(function* () {
      const memory = BatchExecutor.memory()
      const error = yield* BatchFlow.make({ retry: { maxAttempts: 0 } }).pipe(
        Effect.provide(BatchExecutor.layerMemory(memory)),
        Effect.scoped,
        Effect.flip
      )
      expect(error).toMatchObject({ _tag: "BatchFlowConfigError", field: "retry.maxAttempts" })
    })
  )
})

describe("reading from Effect Config", () => {
  it.effect("BatchFlowConfig.config reads the BATCHFLOW_* variables and leaves unset ones undefined", () =>
    Effect.gen(function* () {
      const provider = env({
        BATCHFLOW_FLUSH_SIZE: "7",
        BATCHFLOW_FLUSH_INTERVAL: "250 millis",
        BATCHFLOW_BUFFER_SIZE: "70",
        BATCHFLOW_RETRY_MAX_ATTEMPTS: "4",
        BATCHFLOW_RETRY_BACKOFF_BASE: "5 millis",
        BATCHFLOW_RETRY_JITTER: "0",
        BATCHFLOW_TIMEOUT: "5 seconds",
        BATCHFLOW_FAILURE_BUFFER_SIZE: "16"
      })
      const options = yield* Effect.withConfigProvider(BatchFlowConfig.config, provider)
      expect(options.flushSize).toBe(7)
      expect(options.bufferSize).toBe(70)
      expect(Duration.toMillis(Duration.decode(options.flushInterval!))).toBe(250)
      expect(options.retry?.maxAttempts).toBe(4)
      expect(Duration.toMillis(Duration.decode(options.retry!.backoffBase!))).toBe(5)
      expect(options.retry?.jitter).toBe(0)
      expect(options.retry?.maxBackoff).toBeUndefined()
      expect(Duration.toMillis(Duration.decode(options.timeout!))).toBe(5000)
      expect(options.failureBufferSize).toBe(16)
      expect(options.concurrency).toBeUndefined()
      expect(options.closeTimeout).toBeUndefined()

      const config = yield* BatchFlowConfig.make(options)
      expect(config.flushSize).toBe(7)
      expect(config.concurrency).toBe(BatchFlowConfig.defaults.concurrency)
      expect(config.closeTimeout).toEqual(BatchFlowConfig.defaults.closeTimeout)
      expect(config.retry.maxBackoff).toEqual(BatchFlowConfig.defaults.retry.maxBackoff)
    })
  )

  it.effect("an empty environment gives the defaults", () =>
    Effect.gen(function* () {
      const options = yield* Effect.withConfigProvider(BatchFlowConfig.config, env({}))
      expect(yield* BatchFlowConfig.make(options)).toEqual(BatchFlowConfig.defaults)
    })
  )

  it.effect("BatchFlow.layerConfig() builds a working flow with the values from the environment", () =>
    Effect.gen(function* () {
      const memory = BatchExecutor.memory()
      const scope = yield* Scope.make()
      const ctx = yield* Layer.buildWithScope(
        BatchFlow.layerConfig().pipe(Layer.provide(BatchExecutor.layerMemory(memory))),
        scope
      ).pipe(
        Effect.withConfigProvider(env({ BATCHFLOW_FLUSH_SIZE: "7", BATCHFLOW_FLUSH_INTERVAL: "250 millis" }))
      )
      const flow = Context.get(ctx, BatchFlow.BatchFlow)

      // flushSize 7: a full batch is written at once.
      for (let id = 0; id < 7; id++) yield* flow.submit(Events, { id })
      yield* TestClock.adjust("1 millis")
      expect(memory.batches.map((b) => b.rows.length)).toEqual([7])

      // flushInterval 250 ms: a partial batch waits for it.
      for (let id = 7; id < 10; id++) yield* flow.submit(Events, { id })
      yield* TestClock.adjust("240 millis")
      expect(memory.rowCount()).toBe(7)
      yield* TestClock.adjust("20 millis")
      expect(memory.batches.map((b) => b.rows.length)).toEqual([7, 3])

      const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(closing)
      expect(yield* flow.stats).toMatchObject({ accepted: 10, committed: 10 })
    })
  )

  it.effect("a value that is not a number or a duration gives a typed ConfigError naming the variable", () =>
    Effect.gen(function* () {
      for (const [key, value] of [
        ["BATCHFLOW_FLUSH_SIZE", "seven"],
        ["BATCHFLOW_FLUSH_SIZE", "1.5"],
        ["BATCHFLOW_FLUSH_INTERVAL", "soon"],
        ["BATCHFLOW_RETRY_JITTER", "lots"]
      ] as const) {
        const error = yield* Effect.flip(
          Effect.withConfigProvider(BatchFlowConfig.config, env({ [key]: value }))
        )
        expect(ConfigError.isConfigError(error), `${key}=${value}`).toBe(true)
        expect(ConfigError.isInvalidData(error), `${key}=${value}`).toBe(true)
        const path = (error as ConfigError.InvalidData).path.join("_")
        expect(path).toBe(key)
      }
    })
  )

  it.effect("BatchFlow.layerConfig() fails to build with ConfigError or BatchFlowConfigError", () =>
    Effect.gen(function* () {
      const build = (entries: Record<string, string>) =>
        Layer.build(
          BatchFlow.layerConfig().pipe(Layer.provide(BatchExecutor.layerMemory(BatchExecutor.memory())))
        ).pipe(Effect.scoped, Effect.withConfigProvider(env(entries)), Effect.flip)
      const unreadable = yield* build({ BATCHFLOW_CONCURRENCY: "many" })
      expect(ConfigError.isConfigError(unreadable)).toBe(true)

      const outOfRange = yield* build({ BATCHFLOW_FLUSH_SIZE: "0" })
      expect(outOfRange).toBeInstanceOf(BatchFlowError.BatchFlowConfigError)
      expect(outOfRange).toMatchObject({ field: "flushSize", value: "0" })

      const jitter = yield* build({ BATCHFLOW_RETRY_JITTER: "2" })
      expect(jitter).toMatchObject({ _tag: "BatchFlowConfigError", field: "retry.jitter", value: "2" })

      const backoff = yield* build({ BATCHFLOW_RETRY_BACKOFF_BASE: "3 seconds" })
      expect(backoff).toMatchObject({ _tag: "BatchFlowConfigError", field: "retry.maxBackoff" })
    })
  )
})
