/**
 * Retry: the backoff schedule and the error classifier that decides which errors are retried and
 * under which low-cardinality reason a failure is reported.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Layer from "effect/Layer"
import * as Predicate from "effect/Predicate"
import * as Schedule from "effect/Schedule"

/**
 * How the engine treats an error.
 *
 * @since 0.1.0
 * @category models
 */
export interface Classification {
  /** Retry the batch (while attempts remain). */
  readonly retryable: boolean
  /** Low-cardinality label used in failures, logs and metrics (`deadlock`, `timeout`, …). */
  readonly reason: string
  /**
   * The error can be caused by a single row (not-null, check or foreign-key violation, value too
   * long, bad type…). When such an error is final, the engine splits the batch to commit the good
   * rows and report only the bad ones.
   */
  readonly rowLevel?: boolean | undefined
  /**
   * The write may have taken effect: the connection was lost while the statement ran or committed,
   * or the attempt was abandoned at a deadline without an answer. Such an attempt is retried only
   * when the target's writes are idempotent (`Target.idempotentWrites`); otherwise its rows are reported
   * at once with reason `unknown_outcome`. Either way, once an attempt of a part may have been
   * applied, a final failure of that part is reported as `unknown_outcome`, never as `failed`.
   */
  readonly unknownOutcome?: boolean | undefined
}

/**
 * A classification rule: answers for the errors it knows and `undefined` for the others.
 *
 * @since 0.1.0
 * @category models
 */
export type Rule<E = unknown> = (error: E) => Classification | undefined

/**
 * The answer for errors no rule knows: not retried, reason `non_retryable`. Retrying an unknown error
 * could repeat a write that was applied, so unknown errors are final unless a rule says otherwise.
 *
 * @since 0.1.0
 * @category constructors
 */
export const unknownError: Classification = { retryable: false, reason: "non_retryable" }

/**
 * The answer for a write that may have taken effect and will not be sent again: final, reason
 * `unknown_outcome`. The engine gives it to such an error of a target without `idempotentWrites`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const unknownOutcome: Classification = {
  retryable: false,
  reason: "unknown_outcome",
  unknownOutcome: true
}

/**
 * The engine's own rules: attempt timeouts are retryable (`timeout`) with an unknown outcome (the
 * attempt was abandoned without an answer), `ExecutorError`s carry their own answer. (Defects, i.e.
 * thrown exceptions, never reach the rules: they are final, reason `defect`.)
 *
 * @since 0.1.0
 * @category rules
 */
export const engineRule: Rule = (error) => {
  if (Predicate.isTagged(error, "AttemptTimeout"))
    return { retryable: true, reason: "timeout", unknownOutcome: true }
  if (Predicate.isTagged(error, "ExecutorError") && Predicate.hasProperty(error, "retryable")) {
    const e = error as unknown as {
      readonly retryable: boolean
      readonly reason: string
      readonly unknownOutcome?: boolean | undefined
    }
    return { retryable: e.retryable, reason: e.reason, unknownOutcome: e.unknownOutcome === true }
  }
  return undefined
}

/**
 * Combines rules: the first that answers wins; `unknownError` when none does.
 *
 * @since 0.1.0
 * @category combinators
 */
export const classifyWith =
  (rules: ReadonlyArray<Rule>) =>
  (error: unknown): Classification => {
    for (const rule of rules) {
      const answer = rule(error)
      if (answer !== undefined) return answer
    }
    return unknownError
  }

/**
 * A service with user rules for classifying executor errors (see `layer`, deprecated: use the flow's
 * `rules` option). The engine asks these rules first, then
 * the executor's own rules (database-specific, shipped with each backend), then `engineRule`.
 *
 * @since 0.1.0
 * @category tags
 */
export class ErrorClassifier extends Context.Tag("effect-batchflow/Retry/ErrorClassifier")<
  ErrorClassifier,
  { readonly rules: ReadonlyArray<Rule> }
>() {}

/**
 * Provides user classification rules, tried in order before the backend's and the engine's.
 *
 * @deprecated Give the flow its rules: `BatchFlow.layer({ rules: [...], executors })`. This layer is
 * looked up as an optional service: provided in the wrong place it is ignored, with no type error.
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (...rules: ReadonlyArray<Rule>): Layer.Layer<ErrorClassifier> =>
  Layer.succeed(ErrorClassifier, { rules })

/**
 * Retry settings. The delay before retry n (1-based) is `min(backoffBase · 2^(n-1) · j, maxBackoff)`
 * where `j` is drawn uniformly from `[1 - jitter, 1 + jitter]`: exponential, jittered, and never above
 * `maxBackoff`.
 *
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /**
   * Attempts per batch, including the first. `1` disables retry. Default 20; range ≥ 1. With the
   * default backoff, 20 attempts span about 30 s, so `maxElapsed` is usually the limit that ends
   * them.
   */
  readonly maxAttempts: number
  /**
   * How long a batch keeps being retried, from its first failure: no retry starts past it. Default
   * 30 s, long enough for a database restart (3 attempts, the former default, spanned ≈ 60 ms of
   * backoff; the OpenTelemetry Collector retries for 5 minutes, Kafka's producer for 2); > 0 or
   * infinity.
   */
  readonly maxElapsed: Duration.Duration
  /** The first backoff delay. Default 20 ms; must be > 0. */
  readonly backoffBase: Duration.Duration
  /** The largest backoff delay, jitter included. Default 2 s; must be ≥ backoffBase. */
  readonly maxBackoff: Duration.Duration
  /** Relative jitter of each delay. Default 0.2 (±20 %); range 0–1. */
  readonly jitter: number
  /**
   * Your own retry policy, instead of the backoff above: its input is the classification of the
   * last error, its delays are the waits, and it ends the retries when it ends (`maxAttempts` and
   * `maxElapsed` still bound it). Errors classified as not retryable are never retried, whatever it
   * says.
   */
  readonly schedule?: Schedule.Schedule<unknown, Classification> | undefined
}

/**
 * The retry schedule: retries while the classified input is retryable and attempts remain. The delay before retry n (1-based) is
 * `min(backoffBase · 2^(n-1) · j, maxBackoff)` with `j` uniform in `[1 - jitter, 1 + jitter]`: the cap
 * is applied after the jitter, so it holds. Its input is the classification of the last error.
 *
 * @since 0.1.0
 * @category constructors
 */
export const schedule = (options: Options): Schedule.Schedule<unknown, Classification> =>
  (
    options.schedule ??
    Schedule.exponential(options.backoffBase).pipe(
      Schedule.jitteredWith({ min: 1 - options.jitter, max: 1 + options.jitter }),
      Schedule.modifyDelay((_, delay) => Duration.min(delay, options.maxBackoff))
    )
  ).pipe(
    Schedule.intersect(Schedule.recurs(options.maxAttempts - 1)),
    (schedule) =>
      Duration.isFinite(options.maxElapsed) ? Schedule.upTo(schedule, options.maxElapsed) : schedule,
    Schedule.whileInput((c: Classification) => c.retryable)
  )
