/**
 * The engine's configuration: every field with its default, its allowed range and its reason.
 * Invalid values fail when the flow's layer is built, with an error naming the field.
 *
 * @since 0.1.0
 */
import * as Config from "effect/Config"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Schedule from "effect/Schedule"
import { type BatchFailure, BatchFlowConfigError } from "./BatchFlowError.js"
import type * as Retry from "./Retry.js"
import type * as Target from "./Target.js"

/**
 * One row of a `BatchFailure`, as given to a dead-letter target's `toRow`.
 *
 * @since 0.1.0
 * @category models
 */
export interface DeadLetter {
  /** The target the row was submitted to. */
  readonly target: string
  /** The failure's reason (`non_retryable`, `bad_value`, `close_timeout`, `unknown_outcome`…). */
  readonly reason: string
  readonly outcome: "failed" | "unknown_outcome"
  /** Executor attempts made for the row's batch. */
  readonly attempts: number
  /** The failure's message (row values masked unless `logRowValues`). */
  readonly error: string
  /** The row as validated at submit. */
  readonly row: unknown
  readonly failedAt: Date
}

/**
 * Where rows that could not be written go: every row of every `BatchFailure` (except those of the
 * dead-letter target itself) is turned into a row of `target` by `toRow` and written by the same
 * flow, with retry and the other targets' guarantees. A dead-letter row that fails is reported like
 * any other failure and never dead-lettered again.
 *
 * @since 0.1.0
 * @category models
 */
export interface DeadLetterOptions {
  readonly target: Target.Any
  /** The dead-letter row of one failed row; it is validated against `target`'s schema. */
  readonly toRow: (letter: DeadLetter) => unknown
}

/**
 * A `deadLetter` option whose `toRow` is type-checked against the target's row type.
 *
 * @since 0.1.0
 * @category constructors
 */
export const deadLetterTo = <D>(
  target: Target.Target<D>,
  toRow: (letter: DeadLetter) => D
): DeadLetterOptions => ({ target, toRow })

/**
 * The labels of the flow's metrics (`metrics` option).
 *
 * @since 0.1.0
 * @category models
 */
export interface MetricsOptions {
  /** The `database` label on every metric (the seed's). Default `unknown`. */
  readonly database?: string | undefined
  /** The `instance_id` label on every metric; absent when not given. Give each flow its own. */
  readonly instanceId?: string | undefined
  /**
   * Add a `target` label to `batch_size`, `execute_duration_seconds` and `errors_total` (the seed's
   * optional `table` label). Off by default: one series per target. The `batchflow_target_*`
   * metrics always carry it.
   */
  readonly includeTarget?: boolean | undefined
}

/**
 * Retry settings: see `Retry.Options`.
 *
 * @since 0.1.0
 * @category models
 */
export type RetryOptions = Retry.Options

/**
 * The resolved configuration.
 *
 * @since 0.1.0
 * @category models
 */
export interface BatchFlowConfig {
  /**
   * Rows the buffer holds before `submit` suspends. Default 10,000; must be ≥ flushSize. Rows held in
   * memory are at most bufferSize + (concurrency + targets per flush) × flushSize.
   */
  readonly bufferSize: number
  /** Rows per batch (all targets together): a full batch is written at once. Default 500; ≥ 1. */
  readonly flushSize: number
  /**
   * The longest a partial batch waits before it is written, counted from when the engine sees the
   * buffer stop being empty (and restarted after every flush). Default 100 ms; must be > 0.
   */
  readonly flushInterval: Duration.Duration
  /** Executor calls running at once. Default 4; ≥ 1. */
  readonly concurrency: number
  /** Retry of failed executor calls; only errors the classifier calls retryable are retried. */
  readonly retry: RetryOptions
  /**
   * Per-attempt limit. The SQL executors give it to the server (PostgreSQL `statement_timeout`,
   * MariaDB `max_statement_time`), which rolls a slower statement back; an attempt with no answer
   * by `timeout` + min(timeout, 1 s) is abandoned, its outcome unknown. Default 30 s; > 0 or infinity.
   */
  readonly timeout: Duration.Duration
  /**
   * How long closing waits for buffered and in-flight rows. Rows not written by then are reported
   * as a `BatchFailure`: `close_timeout` when never sent, `unknown_outcome` when being written.
   * Default 30 s; > 0 or infinity.
   */
  readonly closeTimeout: Duration.Duration
  /**
   * How long `submit`, `submitAll` and `write` wait for room in a full buffer (or in a failing
   * target's retry backlog) before failing with `BufferFull`. Default infinity: they wait as long as
   * it takes (backpressure). `trySubmit` never waits. > 0 or infinity.
   */
  readonly submitTimeout: Duration.Duration
  /** Failures kept for the `failures` stream until read; further ones are dropped and counted. Default 1,024; ≥ 1. */
  readonly failureBufferSize: number
  /**
   * Runs for every `BatchFailure`, in order, in a fiber of its own: the engine never waits for it.
   * Failures are queued for it up to `failureBufferSize`; more are dropped (counted in
   * `stats.droppedOnFailure`; they are still in `failures` and logged). Its errors and defects are
   * logged. Closing waits for it to catch up, within `closeTimeout`.
   */
  readonly onFailure: ((failure: BatchFailure) => Effect.Effect<void, unknown>) | undefined
  /** See `DeadLetterOptions`; none by default. */
  readonly deadLetter: DeadLetterOptions | undefined
  /**
   * Your classification rules, tried in order before the executors' own rules and the engine's (see
   * `Retry`). None by default.
   */
  readonly rules: ReadonlyArray<Retry.Rule>
  /**
   * Whether the flow updates the metrics of `BatchFlowMetrics`, and their labels (`true` for the
   * default labels). Off by default.
   */
  readonly metrics: MetricsOptions | undefined
  /**
   * An executor call (retries and backoff included) that takes at least this long is logged as a
   * warning. Default 5 s; > 0, or infinity to turn the warning off.
   */
  readonly slowBatchThreshold: Duration.Duration
  /**
   * Whether logs and error messages may show row values. Default false: an `InvalidRow` names the
   * field and the type given, and a final failure's log line and `BatchFailure.message` have the
   * driver's text with every row value masked as `***`. When true, the failure's log line shows up
   * to 3 of its rows as JSON and the driver's text as written, and `InvalidRow.detail` ends with the
   * value; the values of `sensitiveColumns` are `[REDACTED]` in all of them. For debugging: log
   * lines may then hold personal data.
   */
  readonly logRowValues: boolean
  /**
   * Columns whose values are never shown, even with `logRowValues`. A column is sensitive when its
   * name, lower-cased, contains an entry, lower-cased: `email` covers `user_email` and `EmailAddress`.
   * Default `password`, `token`, `secret`, `email`, `phone`; entries are non-empty strings; `[]`
   * redacts nothing.
   */
  readonly sensitiveColumns: ReadonlyArray<string>
}

/**
 * What users pass: every field optional, durations in any `DurationInput` form.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  readonly bufferSize?: number | undefined
  readonly flushSize?: number | undefined
  readonly flushInterval?: Duration.DurationInput | undefined
  readonly concurrency?: number | undefined
  readonly retry?:
    | {
        readonly maxAttempts?: number | undefined
        readonly maxElapsed?: Duration.DurationInput | undefined
        readonly backoffBase?: Duration.DurationInput | undefined
        readonly maxBackoff?: Duration.DurationInput | undefined
        readonly jitter?: number | undefined
        readonly schedule?: Schedule.Schedule<unknown, Retry.Classification> | undefined
      }
    | undefined
  readonly timeout?: Duration.DurationInput | undefined
  readonly closeTimeout?: Duration.DurationInput | undefined
  readonly submitTimeout?: Duration.DurationInput | undefined
  readonly failureBufferSize?: number | undefined
  readonly onFailure?: ((failure: BatchFailure) => Effect.Effect<void, unknown>) | undefined
  readonly deadLetter?: DeadLetterOptions | undefined
  readonly rules?: ReadonlyArray<Retry.Rule> | undefined
  readonly metrics?: boolean | MetricsOptions | undefined
  readonly slowBatchThreshold?: Duration.DurationInput | undefined
  readonly logRowValues?: boolean | undefined
  readonly sensitiveColumns?: ReadonlyArray<string> | undefined
}

/**
 * @since 0.1.0
 * @category constructors
 */
export const defaults: BatchFlowConfig = {
  bufferSize: 10_000,
  flushSize: 500,
  flushInterval: Duration.millis(100),
  concurrency: 4,
  retry: {
    maxAttempts: 20,
    maxElapsed: Duration.seconds(30),
    backoffBase: Duration.millis(20),
    maxBackoff: Duration.seconds(2),
    jitter: 0.2
  },
  timeout: Duration.seconds(30),
  closeTimeout: Duration.seconds(30),
  submitTimeout: Duration.infinity,
  failureBufferSize: 1024,
  onFailure: undefined,
  deadLetter: undefined,
  rules: [],
  metrics: undefined,
  slowBatchThreshold: Duration.seconds(5),
  logRowValues: false,
  sensitiveColumns: ["password", "token", "secret", "email", "phone"]
}

const invalid = (field: string, value: unknown, expected: string) =>
  Effect.fail(new BatchFlowConfigError({ field, value: String(value), expected }))

const integerAtLeast = (field: string, value: number, min: number, extra = "") =>
  Number.isSafeInteger(value) && value >= min
    ? Effect.succeed(value)
    : invalid(field, value, `an integer ≥ ${min}${extra}`)

const duration = (field: string, input: Duration.DurationInput, allowInfinity: boolean) =>
  Effect.suspend(() => {
    const decoded = Duration.decodeUnknown(input)
    if (decoded._tag === "None") return invalid(field, input, "a duration such as 100 millis or 5 seconds")
    const d = decoded.value
    if (!Duration.isFinite(d)) {
      return allowInfinity ? Effect.succeed(d) : invalid(field, Duration.format(d), "a finite duration")
    }
    return Duration.toMillis(d) > 0 ? Effect.succeed(d) : invalid(field, Duration.format(d), "a duration > 0")
  })

/**
 * Resolves options against the defaults and validates every field.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (options: Options = {}): Effect.Effect<BatchFlowConfig, BatchFlowConfigError> =>
  Effect.gen(function* () {
    const flushSize = yield* integerAtLeast("flushSize", options.flushSize ?? defaults.flushSize, 1)
    const bufferSize = yield* integerAtLeast(
      "bufferSize",
      options.bufferSize ?? defaults.bufferSize,
      flushSize,
      " (at least flushSize)"
    )
    const flushInterval = yield* duration(
      "flushInterval",
      options.flushInterval ?? defaults.flushInterval,
      false
    )
    const concurrency = yield* integerAtLeast("concurrency", options.concurrency ?? defaults.concurrency, 1)
    const retry = options.retry ?? {}
    const maxAttempts = yield* integerAtLeast(
      "retry.maxAttempts",
      retry.maxAttempts ?? defaults.retry.maxAttempts,
      1
    )
    const backoffBase = yield* duration(
      "retry.backoffBase",
      retry.backoffBase ?? defaults.retry.backoffBase,
      false
    )
    const maxBackoff = yield* duration(
      "retry.maxBackoff",
      retry.maxBackoff ?? defaults.retry.maxBackoff,
      false
    )
    if (Duration.lessThan(maxBackoff, backoffBase)) {
      return yield* invalid(
        "retry.maxBackoff",
        Duration.format(maxBackoff),
        `a duration ≥ retry.backoffBase (${Duration.format(backoffBase)})`
      )
    }
    const maxElapsed = yield* duration(
      "retry.maxElapsed",
      retry.maxElapsed ?? defaults.retry.maxElapsed,
      true
    )
    const jitter = retry.jitter ?? defaults.retry.jitter
    if (!(jitter >= 0 && jitter <= 1)) return yield* invalid("retry.jitter", jitter, "a number from 0 to 1")
    const timeout = yield* duration("timeout", options.timeout ?? defaults.timeout, true)
    const closeTimeout = yield* duration("closeTimeout", options.closeTimeout ?? defaults.closeTimeout, true)
    const submitTimeout = yield* duration(
      "submitTimeout",
      options.submitTimeout ?? defaults.submitTimeout,
      true
    )
    const failureBufferSize = yield* integerAtLeast(
      "failureBufferSize",
      options.failureBufferSize ?? defaults.failureBufferSize,
      1
    )
    const slowBatchThreshold = yield* duration(
      "slowBatchThreshold",
      options.slowBatchThreshold ?? defaults.slowBatchThreshold,
      true
    )
    const onFailure = options.onFailure
    if (onFailure !== undefined && typeof onFailure !== "function")
      return yield* invalid("onFailure", String(onFailure), "a function from a BatchFailure to an Effect")
    const deadLetter = options.deadLetter
    if (
      deadLetter !== undefined &&
      (typeof deadLetter.toRow !== "function" || typeof deadLetter.target?.validate !== "function")
    ) {
      return yield* invalid(
        "deadLetter",
        String(deadLetter),
        "{ target, toRow } with a target and a function"
      )
    }
    const rules = options.rules ?? defaults.rules
    if (!Array.isArray(rules) || !rules.every((rule) => typeof rule === "function"))
      return yield* invalid("rules", String(rules), "a list of functions from an error to a classification")
    const metrics = options.metrics ?? false
    if (typeof metrics !== "boolean" && (typeof metrics !== "object" || metrics === null))
      return yield* invalid(
        "metrics",
        String(metrics),
        "true, false or the labels { database, instanceId, includeTarget }"
      )
    const logRowValues = options.logRowValues ?? defaults.logRowValues
    if (typeof logRowValues !== "boolean")
      return yield* invalid("logRowValues", logRowValues, "true or false")
    const sensitiveColumns = options.sensitiveColumns ?? defaults.sensitiveColumns
    if (
      !Array.isArray(sensitiveColumns) ||
      !sensitiveColumns.every((entry) => typeof entry === "string" && entry.trim() !== "")
    ) {
      return yield* invalid(
        "sensitiveColumns",
        JSON.stringify(sensitiveColumns),
        "a list of non-empty column names (or parts of names)"
      )
    }
    return {
      rules,
      metrics: metrics === true ? {} : metrics === false ? undefined : metrics,
      slowBatchThreshold,
      logRowValues,
      sensitiveColumns: sensitiveColumns.map((entry) => entry.trim()),
      bufferSize,
      flushSize,
      flushInterval,
      concurrency,
      retry: {
        maxAttempts,
        maxElapsed,
        backoffBase,
        maxBackoff,
        jitter,
        ...(retry.schedule === undefined ? {} : { schedule: retry.schedule })
      },
      timeout,
      closeTimeout,
      submitTimeout,
      failureBufferSize,
      onFailure,
      deadLetter
    }
  })

const optional = <A>(config: Config.Config<A>, description: string) =>
  Config.option(config.pipe(Config.withDescription(description))).pipe(
    Config.map((option) => (option._tag === "Some" ? option.value : undefined))
  )

/**
 * Reads options from Effect `Config`. With the default provider these are environment variables:
 * `BATCHFLOW_BUFFER_SIZE`, `BATCHFLOW_FLUSH_SIZE`, `BATCHFLOW_FLUSH_INTERVAL` (e.g. `100 millis`),
 * `BATCHFLOW_CONCURRENCY`, `BATCHFLOW_RETRY_MAX_ATTEMPTS`, `BATCHFLOW_RETRY_BACKOFF_BASE`,
 * `BATCHFLOW_RETRY_MAX_BACKOFF`, `BATCHFLOW_RETRY_JITTER`, `BATCHFLOW_TIMEOUT`,
 * `BATCHFLOW_CLOSE_TIMEOUT`, `BATCHFLOW_SUBMIT_TIMEOUT`, `BATCHFLOW_FAILURE_BUFFER_SIZE`, `BATCHFLOW_SLOW_BATCH_THRESHOLD`,
 * `BATCHFLOW_LOG_ROW_VALUES` (`true`/`false`) and `BATCHFLOW_SENSITIVE_COLUMNS` (comma-separated,
 * e.g. `password,token,ssn`; it replaces the default list). Unset variables keep their defaults;
 * the values are validated by `make` like any other options.
 *
 * @since 0.1.0
 * @category config
 */
export const config: Config.Config<Options> = Config.nested(
  Config.all({
    bufferSize: optional(Config.integer("BUFFER_SIZE"), "rows buffered before submit suspends"),
    flushSize: optional(Config.integer("FLUSH_SIZE"), "rows per batch"),
    flushInterval: optional(Config.duration("FLUSH_INTERVAL"), "longest wait of a partial batch"),
    concurrency: optional(Config.integer("CONCURRENCY"), "executor calls at once"),
    retry: Config.all({
      maxAttempts: optional(Config.integer("RETRY_MAX_ATTEMPTS"), "attempts per batch, including the first"),
      maxElapsed: optional(
        Config.duration("RETRY_MAX_ELAPSED"),
        "how long a batch is retried, from its first failure"
      ),
      backoffBase: optional(Config.duration("RETRY_BACKOFF_BASE"), "first backoff delay"),
      maxBackoff: optional(Config.duration("RETRY_MAX_BACKOFF"), "largest backoff delay"),
      jitter: optional(Config.number("RETRY_JITTER"), "relative jitter of each delay, 0-1")
    }),
    timeout: optional(Config.duration("TIMEOUT"), "per-attempt timeout"),
    closeTimeout: optional(Config.duration("CLOSE_TIMEOUT"), "how long close waits"),
    submitTimeout: optional(
      Config.duration("SUBMIT_TIMEOUT"),
      "how long a submit waits for room in a full buffer"
    ),
    failureBufferSize: optional(Config.integer("FAILURE_BUFFER_SIZE"), "failures kept until read"),
    slowBatchThreshold: optional(
      Config.duration("SLOW_BATCH_THRESHOLD"),
      "executor calls slower than this are logged"
    ),
    logRowValues: optional(Config.boolean("LOG_ROW_VALUES"), "whether logs and errors may show row values"),
    sensitiveColumns: optional(
      Config.array(Config.string(), "SENSITIVE_COLUMNS"),
      "columns whose values are always redacted (comma-separated)"
    )
  }),
  "BATCHFLOW"
)

const defined = <A extends object>(record: A | undefined): Partial<A> =>
  Object.fromEntries(Object.entries(record ?? {}).filter(([, value]) => value !== undefined)) as Partial<A>

/**
 * Options read from `Config` over options given in code: every value that was read wins, one that
 * was not (`undefined`) leaves the code's, field by field (`retry` too).
 *
 * @since 0.1.0
 * @category combinators
 */
export const merge = <O extends Options>(options: O, read: Options): O => ({
  ...options,
  ...defined(read),
  retry: { ...options.retry, ...defined(read.retry) }
})
