/**
 * Redis errors and their classification: which errors are retried, under which low-cardinality
 * reason a failure is reported, and whether a failed command may have been applied.
 */
import * as Predicate from "effect/Predicate"
import * as Schema from "effect/Schema"
import * as Retry from "../../Retry.js"

/**
 * What happened to a command that did not succeed:
 * - `rejected`: Redis answered with an error; the command was not applied.
 * - `not_sent`: the client refused to send it (no connection); it was not applied.
 * - `unknown`: it was sent and no answer came back (connection cut, timeout); it may have been applied.
 *
 * @internal
 */
export type Fate = "rejected" | "not_sent" | "unknown"

/** The connection closed before a pipeline got any answer. @internal */
export class ConnectionLost extends Error {
  override readonly name = "ConnectionLost"
  constructor() {
    super("the connection to Redis closed before the commands were answered")
  }
}

/** The message of an error (or of anything with a string `message`), else its string form. @internal */
export const messageOf = (error: unknown): string =>
  Predicate.hasProperty(error, "message") && typeof error.message === "string" ? error.message : String(error)

const isReplyError = (error: unknown): boolean =>
  Predicate.hasProperty(error, "name") && error.name === "ReplyError"

/** @internal */
export const fateOf = (error: unknown): Fate => {
  if (isReplyError(error)) return "rejected"
  const message = messageOf(error)
  if (
    message.startsWith("Stream isn't writeable") ||
    (Predicate.hasProperty(error, "name") && error.name === "MaxRetriesPerRequestError")
  ) {
    return "not_sent"
  }
  return "unknown"
}

const retryableCodes: Record<string, string> = {
  LOADING: "loading",
  BUSY: "busy",
  TRYAGAIN: "tryagain",
  CLUSTERDOWN: "clusterdown",
  MASTERDOWN: "masterdown",
  READONLY: "readonly"
}

const finalCodes: Record<string, string> = {
  WRONGTYPE: "wrongtype",
  OOM: "oom",
  NOSCRIPT: "noscript",
  NOAUTH: "auth",
  WRONGPASS: "auth",
  NOPERM: "auth",
  MOVED: "redirect",
  ASK: "redirect",
  BUSYKEY: "busykey",
  MISCONF: "misconf",
  NOREPLICAS: "noreplicas",
  EXECABORT: "execabort"
}

/**
 * Classifies a Redis reply error by its code (the first word) and, for generic `ERR` replies, by
 * its text. Reasons are a small fixed set.
 *
 * @internal
 */
export const classifyReply = (message: string): Retry.Classification => {
  const space = message.indexOf(" ")
  const code = space === -1 ? message : message.slice(0, space)
  const retryable = retryableCodes[code]
  if (retryable !== undefined) return { retryable: true, reason: retryable }
  const final = finalCodes[code]
  if (final !== undefined) return { retryable: false, reason: final }
  const text = message.toLowerCase()
  if (text.includes("syntax error")) return { retryable: false, reason: "syntax" }
  if (text.includes("unknown command")) return { retryable: false, reason: "unknown_command" }
  if (text.includes("equal or smaller than the target stream top item")) {
    return { retryable: false, reason: "stream_id" }
  }
  if (
    text.includes("wrong number of arguments") ||
    text.includes("not an integer") ||
    text.includes("not a valid float") ||
    text.includes("out of range") ||
    text.includes("invalid expire") ||
    text.includes("not compatible")
  ) {
    return { retryable: false, reason: "argument" }
  }
  return { retryable: false, reason: "redis_error" }
}

/**
 * Classifies any error a Redis client can produce: reply errors by code, connection errors as
 * retryable `connection` (or `timeout`), anything else unknown (`undefined`).
 *
 * @internal
 */
export const classifyError = (error: unknown): Retry.Classification | undefined => {
  if (isReplyError(error)) return classifyReply(messageOf(error))
  if (error instanceof ConnectionLost) return { retryable: true, reason: "connection" }
  if (!(error instanceof Error)) return undefined
  const message = error.message.toLowerCase()
  const code = Predicate.hasProperty(error, "code") ? String(error.code) : ""
  if (message.includes("command timed out") || code === "ETIMEDOUT")
    return { retryable: true, reason: "timeout" }
  if (
    error.name === "AbortError" ||
    error.name === "MaxRetriesPerRequestError" ||
    message.startsWith("stream isn't writeable") ||
    message.includes("connection is closed") ||
    ["ECONNREFUSED", "ECONNRESET", "EPIPE", "ENOTCONN", "EHOSTUNREACH", "ENETUNREACH"].includes(code)
  ) {
    return { retryable: true, reason: "connection" }
  }
  return undefined
}

/** @internal */
export const unknownOutcome: Retry.Classification = Retry.unknownOutcome

/**
 * A Redis command of a batch was not applied, or may not have been. The Redis executor reports it
 * for every row the command stands for (through `BatchExecutor.partial`): the other rows of the
 * batch were written exactly once. Retryable errors were already retried for this command alone.
 *
 * @since 0.1.0
 * @category errors
 */
export class RedisCommandError extends Schema.TaggedError<RedisCommandError>()("RedisCommandError", {
  target: Schema.String,
  /** The command (for fused commands, e.g. `MSET`). */
  command: Schema.String,
  /** Low-cardinality reason: `wrongtype`, `argument`, `loading`, `unknown_outcome`, … */
  reason: Schema.String,
  /** Whether the last error was retryable (then the command's attempts ran out). */
  retryable: Schema.Boolean,
  /**
   * `not_applied`: Redis refused the command, or it was never sent. `unknown`: it may have been
   * applied: its answer was lost (connection cut, timeout; a command that is not idempotent is then
   * reported instead of being sent again), or it was applied and then re-sent to keep same-key order
   * and the re-send failed.
   */
  outcome: Schema.Literal("not_applied", "unknown"),
  /** How many times the command was sent. */
  sends: Schema.Number,
  cause: Schema.Defect
}) {
  /** @since 0.1.0 */
  override get message(): string {
    const what =
      this.outcome === "not_applied"
        ? "was not applied"
        : this.reason === "unknown_outcome"
          ? "may have been applied: the connection was lost before Redis answered, and it is not idempotent, so it was not sent again; check the data before writing it again"
          : "may have been applied"
    const sent = this.sends === 1 ? "sent once" : `sent ${this.sends} times`
    return `Redis ${this.command} for target "${this.target}" ${what} (reason: ${this.reason}, ${sent}): ${messageOf(this.cause)}`
  }
}

/**
 * The Redis client could not connect.
 *
 * @since 0.1.0
 * @category errors
 */
export class RedisConnectionError extends Schema.TaggedError<RedisConnectionError>()("RedisConnectionError", {
  /** `host:port` (never the URL: it may hold a password). */
  address: Schema.String,
  cause: Schema.Defect
}) {
  /** @since 0.1.0 */
  override get message(): string {
    return `Could not connect to Redis at ${this.address}: ${messageOf(this.cause)}. Check that the server is running and the connection settings (BATCHFLOW_REDIS_URL).`
  }
}

/**
 * The engine rule of the Redis executor: a `RedisCommandError` carries its own classification; raw
 * client errors (from custom executors using the same client) are classified by `classifyError`.
 *
 * @internal
 */
export const rule: Retry.Rule = (error) => {
  if (error instanceof RedisCommandError)
    return { retryable: error.retryable, reason: error.reason, unknownOutcome: error.outcome === "unknown" }
  return classifyError(error)
}
