/**
 * The typed errors of effect-batchflow. Each says what happened and what to do, and keeps the
 * underlying driver or executor error as `cause`.
 *
 * @since 0.1.0
 */
import * as Predicate from "effect/Predicate"
import * as Schema from "effect/Schema"
import { maskedDetail } from "./internal/rows/redact.js"

/**
 * @since 0.1.0
 * @category type ids
 */
export const TypeId: unique symbol = Symbol.for("effect-batchflow/BatchFlowError")

/**
 * @since 0.1.0
 * @category type ids
 */
export type TypeId = typeof TypeId

/**
 * True for every error defined in this module.
 *
 * @since 0.1.0
 * @category refinements
 */
export const isBatchFlowError = (u: unknown): u is BatchFlowError => Predicate.hasProperty(u, TypeId)

/**
 * @since 0.1.0
 * @category models
 */
export type BatchFlowError =
  | BatchFlowClosed
  | BufferFull
  | InvalidRow
  | BatchFailure
  | BatchFlowConfigError
  | AttemptTimeout
  | ExecutorError
  | NoExecutor

/**
 * `submit`, `submitAll` or `write` was called after `close` started (or the scope closed). The row
 * was not accepted; nothing was enqueued.
 *
 * @since 0.1.0
 * @category errors
 */
export class BatchFlowClosed extends Schema.TaggedError<BatchFlowClosed>()("BatchFlowClosed", {
  target: Schema.String
}) {
  /** @since 0.1.0 */
  readonly [TypeId]: TypeId = TypeId
  /** @since 0.1.0 */
  override get message(): string {
    return `BatchFlow is closed: the row for target "${this.target}" was not accepted. Submit before closing the flow's scope.`
  }
}

/**
 * The buffer stayed full for `submitTimeout` (see `BatchFlowConfig`): the row (or, for `submitAll`,
 * the rows after the first `accepted`) was not accepted; nothing of it was enqueued. The database is
 * not keeping up with the producers.
 *
 * @since 0.1.0
 * @category errors
 */
export class BufferFull extends Schema.TaggedError<BufferFull>()("BufferFull", {
  target: Schema.String,
  /** The flow's `bufferSize`. */
  bufferSize: Schema.Number,
  /** How long the call waited for room. */
  waitedMillis: Schema.Number,
  /** Rows of a `submitAll` accepted before it gave up (0 for `submit` and `write`). */
  accepted: Schema.Number
}) {
  /** @since 0.1.0 */
  readonly [TypeId]: TypeId = TypeId
  /** @since 0.1.0 */
  override get message(): string {
    const rows = this.accepted > 0 ? `rows after the first ${this.accepted}` : "row"
    return `BatchFlow buffer is full: the ${rows} for target "${this.target}" not accepted after waiting ${Math.round(this.waitedMillis)} ms (bufferSize ${this.bufferSize}, submitTimeout). The database is not keeping up: shed the load (answer 503, retry later), or give the flow more room (bufferSize) or more writers (concurrency).`
  }
}

/**
 * What is wrong with a field of a rejected row.
 *
 * - `missing`: a required field is absent (or `undefined`).
 * - `extra`: the row has a field the target's schema does not declare.
 * - `wrong_type`: the value does not match the field's schema (type or refinement).
 * - `not_finite`: a number field holds `NaN`, `Infinity` or `-Infinity`.
 * - `invalid_date`: a `Date` field holds an invalid date (`new Date("x")`): databases store NULL
 *   or reject it, never the value meant.
 * - `lone_surrogate`: a string field holds half of a UTF-16 surrogate pair: MariaDB, SQLite and
 *   Redis would store U+FFFD instead, PostgreSQL rejects it.
 * - `not_an_object`: the row itself is not a plain object.
 *
 * @since 0.1.0
 * @category models
 */
export type InvalidRowProblem =
  | "missing"
  | "extra"
  | "wrong_type"
  | "not_finite"
  | "invalid_date"
  | "lone_surrogate"
  | "not_an_object"

/**
 * A row was rejected at submit because it does not match its target's schema. Nothing was enqueued
 * for the call that failed; other rows are unaffected.
 *
 * @since 0.1.0
 * @category errors
 */
export class InvalidRow extends Schema.TaggedError<InvalidRow>()("InvalidRow", {
  target: Schema.String,
  /** The first offending field (`""` when the row itself is not an object). */
  field: Schema.String,
  problem: Schema.Literal(
    "missing",
    "extra",
    "wrong_type",
    "not_finite",
    "invalid_date",
    "lone_surrogate",
    "not_an_object"
  ),
  /**
   * What the schema expected and the type of the value given (`expected a string, got number`), never
   * the value itself. Only when the flow's `logRowValues` is on does it end with the value, as in
   * `(value: 42)`, or `(value: [REDACTED])` for a sensitive field.
   */
  detail: Schema.String,
  /** For `submitAll`: the position of the rejected row in the submitted array. */
  index: Schema.optional(Schema.Number)
}) {
  /** @since 0.1.0 */
  readonly [TypeId]: TypeId = TypeId
  /** @since 0.1.0 */
  override get message(): string {
    const where = this.index === undefined ? "" : ` (row ${this.index})`
    const field = this.field === "" ? "the row" : `field "${this.field}"`
    return `Invalid row for target "${this.target}"${where}: ${field} is ${problemText[this.problem]}: ${this.detail}. Fix the row to match the target's schema and submit it again.`
  }
}

const problemText: Record<InvalidRowProblem, string> = {
  missing: "missing",
  extra: "not declared by the schema",
  wrong_type: "of the wrong type",
  not_finite: "not a finite number",
  invalid_date: "an invalid date",
  lone_surrogate: "a string with a lone UTF-16 surrogate",
  not_an_object: "not an object"
}

/**
 * The final outcome of a group of rows that were not committed: after the last attempt, after a
 * non-retryable error, or because the flow closed before they could be written (reason
 * `close_timeout`). Every accepted row that is not committed is reported in exactly one
 * `BatchFailure`, and `outcome` says what is known: `failed` (not written) or `unknown_outcome`
 * (maybe written: branch on it before replaying the rows).
 *
 * `rows` and `cause` are the raw data (the rows as submitted, the driver's or executor's own error):
 * they are for your code, and the library never logs them. `message` carries no row values: it is
 * built from `detail`, the cause's text with the values masked (see `detail`).
 *
 * @since 0.1.0
 * @category errors
 */
export class BatchFailure extends Schema.TaggedError<BatchFailure>()("BatchFailure", {
  target: Schema.String,
  rows: Schema.Array(Schema.Unknown),
  attempts: Schema.Number,
  /**
   * A low-cardinality reason from the classifier, e.g. `deadlock`, `busy`, `close_timeout`; always
   * `unknown_outcome` when `outcome` is.
   */
  reason: Schema.String,
  /** Whether the last error was classified as retryable (attempts ran out) or not. */
  retryable: Schema.Boolean,
  /** The last error, untouched: it may quote row values. Never logged by the library. */
  cause: Schema.Defect,
  /**
   * The cause's text as `message` shows it. The engine sets it from the flow's configuration: with
   * quoted literals, `(column)=(value)` details and the rows' values masked as `***` (the default),
   * or, with `logRowValues`, as the driver wrote it with the values of sensitive columns replaced by
   * `[REDACTED]`. When absent, the masked text is computed from `cause` and `rows`.
   */
  detail: Schema.optional(Schema.String),
  /**
   * What is known of the rows: `failed`, they were not written (the database refused or rolled
   * back the write, or it was never sent); `unknown_outcome`, they may have been written (the
   * connection was lost while a statement ran or committed, or an attempt was abandoned at a
   * deadline without an answer). Replaying `unknown_outcome` rows is safe only for idempotent
   * targets (a key with `Conflict.ignore`, `update` or `replace`); check the sink first otherwise.
   * Its reason is then `unknown_outcome`.
   */
  outcome: Schema.optionalWith(Schema.Literal("failed", "unknown_outcome"), {
    default: () => "failed" as const
  })
}) {
  /** @since 0.1.0 */
  readonly [TypeId]: TypeId = TypeId
  /** @since 0.1.0 */
  override get message(): string {
    const tries = this.attempts === 1 ? "1 attempt" : `${this.attempts} attempts`
    const detail = this.detail ?? maskedDetail(this.cause, this.rows)
    return this.outcome === "unknown_outcome"
      ? `${this.rows.length} row(s) for target "${this.target}" may or may not have been written after ${tries} (reason: ${this.reason}): ${detail.replace(/\.$/, "")}. Check the target before writing them again, unless its writes are idempotent.`
      : `${this.rows.length} row(s) for target "${this.target}" were not written after ${tries} (reason: ${this.reason}): ${detail}`
  }
}

/**
 * A configuration value is outside its allowed range. Raised when the flow's layer is built.
 *
 * @since 0.1.0
 * @category errors
 */
export class BatchFlowConfigError extends Schema.TaggedError<BatchFlowConfigError>()("BatchFlowConfigError", {
  field: Schema.String,
  value: Schema.String,
  expected: Schema.String
}) {
  /** @since 0.1.0 */
  readonly [TypeId]: TypeId = TypeId
  /** @since 0.1.0 */
  override get message(): string {
    return `Invalid BatchFlow configuration: ${this.field} must be ${this.expected} (got ${this.value}).`
  }
}

/**
 * One attempt of an executor call gave no answer within the configured `timeout` and a short grace
 * after it. The attempt is abandoned, not interrupted: it may still take effect, and when it ends its
 * real outcome is recorded (`Stats.lateCommitted`, a log line). Classified with reason `timeout` and
 * an unknown outcome: retried only for idempotent targets, otherwise reported as `unknown_outcome`.
 * (The SQL executors also give the database the same deadline, so a slow statement normally ends on
 * the server with a known rollback before this happens.)
 *
 * @since 0.1.0
 * @category errors
 */
export class AttemptTimeout extends Schema.TaggedError<AttemptTimeout>()("AttemptTimeout", {
  target: Schema.String,
  timeoutMillis: Schema.Number,
  /** How long the attempt was given past `timeoutMillis` to settle before it was abandoned. */
  graceMillis: Schema.optionalWith(Schema.Number, { default: () => 0 })
}) {
  /** @since 0.1.0 */
  readonly [TypeId]: TypeId = TypeId
  /** @since 0.1.0 */
  override get message(): string {
    return `Writing a batch for target "${this.target}" gave no answer within ${this.timeoutMillis} ms (and ${this.graceMillis} ms of grace); the attempt was abandoned and may still take effect, so its outcome is unknown.`
  }
}

/**
 * An error a custom executor can fail with to tell the engine how to treat it: whether to retry and
 * under which low-cardinality reason to report it. Errors of other types go through the
 * `ErrorClassifier`.
 *
 * @since 0.1.0
 * @category errors
 */
export class ExecutorError extends Schema.TaggedError<ExecutorError>()("ExecutorError", {
  message: Schema.String,
  retryable: Schema.Boolean,
  reason: Schema.String,
  cause: Schema.optional(Schema.Defect),
  /**
   * The write may have taken effect (e.g. the sink's connection was lost before it answered): retried
   * only for targets with `idempotentWrites`, otherwise reported as `unknown_outcome`.
   */
  unknownOutcome: Schema.optional(Schema.Boolean)
}) {
  /** @since 0.1.0 */
  readonly [TypeId]: TypeId = TypeId
}

/**
 * No executor of the flow accepts the target (e.g. a Redis target in a flow given only
 * `Postgres.executor()`): its rows are reported with reason `no_executor`, never retried.
 *
 * @since 0.1.0
 * @category errors
 */
export class NoExecutor extends Schema.TaggedError<NoExecutor>()("NoExecutor", {
  target: Schema.String,
  /** The names of the flow's executors. */
  executors: Schema.Array(Schema.String)
}) {
  /** @since 0.1.0 */
  readonly [TypeId]: TypeId = TypeId
  /** @since 0.1.0 */
  override get message(): string {
    const have = this.executors.length === 0 ? "none" : this.executors.join(", ")
    return `No executor of this flow writes target "${this.target}" (the flow's executors: ${have}). Add one that accepts it to the flow's \`executors\` (a backend's \`executor()\` or \`BatchExecutor.forTarget\`).`
  }
}

/**
 * A `BatchFailure` of a known target, with its rows typed: what `write` fails with, and what
 * `BatchFlow.isFailureOf` narrows to.
 *
 * @since 0.1.0
 * @category models
 */
export interface BatchFailureOf<A> extends BatchFailure {
  readonly rows: ReadonlyArray<A>
}
