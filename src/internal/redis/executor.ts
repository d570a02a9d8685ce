/**
 * The Redis executor: writes one target's batch as one pipeline (or one MULTI/EXEC) and reads every
 * command's own reply. A batch planned as one command (a fused MSET, DEL or ZADD, or a single row) is
 * sent on its own, without a pipeline around it: same answers, less client work.
 *
 * Pipelines: a command Redis refused with a retryable error (LOADING, BUSY, READONLY…) or that was
 * never sent was not applied, so it is sent again, whatever the command. A command whose answer was
 * lost (connection cut, timeout) may have been applied: it is sent again only if it is idempotent,
 * otherwise reported with reason `unknown_outcome`. Commands that succeeded are never re-sent, except
 * an idempotent command re-sent after an earlier command of the same key, to keep their order.
 *
 * Transactions: MULTI/EXEC is sent with a marker key (`SET marker 1 EX ttl`) inside. When the answer
 * is lost, the marker tells whether EXEC ran (all applied) or not (nothing applied: retry whole).
 *
 * The state of a call is kept per rows array, so when the engine calls again with the same rows (a
 * retry after its per-attempt timeout), what was applied is not sent again.
 *
 * Metrics: every call (engine attempt) reports its plan with `reportOperation`, as the SQL executor
 * does: rows in and out of coalescing, commands and their arguments, under the operation
 * `multi_exec`, the fused command (`mset`, `del`, `unlink`, `zadd`) or `pipeline`.
 */
import { randomUUID } from "node:crypto"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as BatchExecutor from "../../BatchExecutor.js"
import type { RetryOptions } from "../../BatchFlowConfig.js"
import { ExecutorError } from "../../BatchFlowError.js"
import type * as Retry from "../../Retry.js"
import type * as Target from "../../Target.js"
import { type OperationReport, reportOperation } from "../engine/observer.js"
import type { Connection } from "./client.js"
import {
  classifyError,
  classifyReply,
  fateOf,
  messageOf,
  RedisCommandError,
  rule,
  unknownOutcome
} from "./errors.js"
import { forEachRow, type Op, plan } from "./plan.js"
import { isRedisTarget, type RedisTarget } from "./targets.js"

/** @internal */
export interface Options {
  readonly transaction: boolean
  readonly fusion: boolean
  readonly retry: RetryOptions
  readonly markerPrefix: string
  readonly markerTtlSeconds: number
}

/**
 * Counters of one Redis executor since it was made.
 *
 * @since 0.1.0
 * @category models
 */
export interface Stats {
  /** Rows the executor was called with (each engine call counted once). */
  readonly rowsIn: number
  /** Rows left after in-batch coalescing. `rowsIn - rowsOut` rows were coalesced away. */
  readonly rowsOut: number
  /** Rows written through fused commands (MSET, multi-key DEL, ZADD of one key). */
  readonly fusedRows: number
  /** Commands planned (after coalescing and fusion). */
  readonly commands: number
  /** Commands sent, re-sends included. */
  readonly sent: number
  /** Commands sent again after a retryable error or a lost answer. */
  readonly resent: number
  /** MULTI/EXEC blocks sent. */
  readonly transactions: number
  /** Rows reported as not written. */
  readonly failedRows: number
  /** Of those, rows whose commands may have been applied (answer lost, not idempotent). */
  readonly unknownRows: number
}

interface CallState {
  readonly target: RedisTarget<unknown>
  readonly rowCount: number
  readonly ops: ReadonlyArray<Op>
  readonly transaction: boolean
  /** What the plan generated, reported on every call (attempt) for it. */
  readonly report: OperationReport
  rounds: number
  inflight: Promise<void> | undefined
  txUnknown: boolean
  marker: string
}

const notSent: Retry.Classification = { retryable: true, reason: "connection" }

/** @internal */
export const make = (connection: Connection, options: Options) => {
  const stats = {
    rowsIn: 0,
    rowsOut: 0,
    fusedRows: 0,
    commands: 0,
    sent: 0,
    resent: 0,
    transactions: 0,
    failedRows: 0,
    unknownRows: 0
  }
  const calls = new WeakMap<ReadonlyArray<unknown>, CallState>()
  const { maxAttempts, backoffBase, maxBackoff, jitter } = options.retry

  const delay = (round: number): Duration.Duration => {
    const factor = 1 - jitter + Math.random() * 2 * jitter
    const ms = Duration.toMillis(backoffBase) * 2 ** (round - 1) * factor
    return Duration.millis(Math.min(ms, Duration.toMillis(maxBackoff)))
  }

  const begin = (target: RedisTarget<unknown>, rows: ReadonlyArray<unknown>): CallState => {
    const p = plan(target, rows, options.fusion)
    stats.rowsIn += p.rowsIn
    stats.rowsOut += p.rowsOut
    stats.fusedRows += p.fusedRows
    stats.commands += p.ops.length
    const transaction = target.transaction ?? options.transaction
    const coalesce = target.coalesce
    return {
      target,
      rowCount: rows.length,
      ops: p.ops,
      transaction,
      report: {
        target: target.name,
        backend: "redis",
        operation: transaction ? "multi_exec" : p.fused === undefined ? "pipeline" : p.fused.toLowerCase(),
        inputRows: p.rowsIn,
        outputRows: p.rowsOut,
        commands: p.ops.length,
        args: p.args,
        dedupe:
          coalesce === undefined
            ? undefined
            : { strategy: coalesce.strategy, deduplicated: p.deduplicated, merged: p.merged }
      },
      rounds: 0,
      inflight: undefined,
      txUnknown: false,
      marker: ""
    }
  }

  /** Records one command's answer: `error` is `null` or `undefined` when Redis answered without one. */
  const record = (s: Op, error: unknown): void => {
    if (error === null || error === undefined) {
      s.status = "applied"
      s.maybeApplied = true
      s.appliedOnce = true
      s.unknown = false
      return
    }
    s.error = error
    const fate = fateOf(error)
    if (fate === "unknown") {
      s.maybeApplied = true
      s.unknown = true
      s.classification = s.idempotent ? (classifyError(error) ?? notSent) : unknownOutcome
      s.status = s.idempotent ? "pending" : "failed"
      return
    }
    s.unknown = false
    s.classification = fate === "rejected" ? classifyReply(messageOf(error)) : notSent
    s.status = s.classification.retryable ? "pending" : "failed"
  }

  /**
   * Re-sending a command after a later command of the same key may have been applied would reorder
   * them. So per key, the later maybe-applied commands are re-sent too (they are idempotent), and a
   * pending command followed by a maybe-applied non-idempotent one is not retried.
   */
  const protectOrder = (state: CallState): void => {
    const groups = new Map<string, Array<Op>>()
    for (const s of state.ops) {
      const g = groups.get(s.key)
      if (g === undefined) groups.set(s.key, [s])
      else g.push(s)
    }
    for (const g of groups.values()) {
      if (g.length < 2) continue
      let last = -1
      for (let q = 0; q < g.length; q++) {
        const s = g[q]!
        if (s.maybeApplied && s.status !== "pending" && !s.idempotent) last = q
      }
      let resending = false
      for (let q = 0; q < g.length; q++) {
        const s = g[q]!
        if (s.status === "pending") {
          if (q < last) s.status = "failed"
          else resending = true
        } else if (resending && s.maybeApplied) {
          s.status = "pending"
        }
      }
    }
  }

  const pause = (state: CallState): Effect.Effect<void> =>
    Effect.zipRight(
      Effect.sleep(delay(state.rounds)),
      Effect.promise(() => connection.awaitReady(connection.reconnectWaitMillis))
    )

  /**
   * Runs a send; its outcome is recorded even if the calling fiber is interrupted meanwhile. The send
   * starts when the effect runs (not when it was built), so a pause before it is honoured.
   */
  const launch = (state: CallState, send: () => Promise<void>): Effect.Effect<void> =>
    Effect.promise(() => {
      state.rounds++
      const p = send().then(() => {
        if (state.inflight === p) state.inflight = undefined
      })
      state.inflight = p
      return p
    })

  /** The commands to send in the next round, or `undefined` when the call is done. */
  const nextPipelineRound = (state: CallState): ReadonlyArray<Op> | undefined => {
    // First round: every planned command is pending.
    if (state.rounds === 0) return state.ops.length === 0 ? undefined : state.ops
    let pending = pendingOf(state.ops)
    if (pending === undefined) return undefined
    if (state.rounds > 0) {
      protectOrder(state)
      pending = pendingOf(state.ops)
      if (pending === undefined) return undefined
    }
    if (state.rounds >= maxAttempts) {
      for (const s of pending) s.status = "failed"
      return undefined
    }
    return pending
  }

  const sendPipeline = (state: CallState, batch: ReadonlyArray<Op>) => (): Promise<void> => {
    stats.sent += batch.length
    if (state.rounds > 1) stats.resent += batch.length
    for (let i = 0; i < batch.length; i++) batch[i]!.sends++
    if (batch.length === 1) {
      // One command (a fused batch): sent on its own, one answer, no pipeline.
      const only = batch[0]!
      return connection.command(only).then((error) => record(only, error))
    }
    return connection.pipeline(batch).then((replies) => {
      for (let i = 0; i < batch.length; i++) record(batch[i]!, replies[i]![0])
    })
  }

  /**
   * Await what is in flight, pick the pending commands, pause before a re-send, send; until nothing
   * is pending. A first attempt that succeeds is one promise and no other Effect work.
   */
  const runPipeline = (state: CallState): Effect.Effect<void> =>
    Effect.suspend(() => {
      if (state.inflight !== undefined) {
        const inflight = state.inflight
        return Effect.flatMap(
          Effect.promise(() => inflight),
          () => runPipeline(state)
        )
      }
      const batch = nextPipelineRound(state)
      if (batch === undefined) return Effect.void
      const send = Effect.flatMap(launch(state, sendPipeline(state, batch)), () => runPipeline(state))
      return state.rounds === 0 ? send : Effect.zipRight(pause(state), send)
    })

  const settleAll = (state: CallState, status: Op["status"], c?: Retry.Classification, error?: unknown) => {
    for (const s of state.ops) {
      s.status = status
      if (c !== undefined) s.classification = c
      if (error !== undefined) s.error = error
    }
  }

  const sendTransaction = (state: CallState): Promise<void> => {
    state.marker = `${options.markerPrefix}${randomUUID()}`
    stats.transactions++
    stats.sent += state.ops.length
    if (state.rounds > 1) stats.resent += state.ops.length
    for (const s of state.ops) s.sends++
    return connection.transaction(state.ops, state.marker, options.markerTtlSeconds).then((reply) => {
      if (reply._tag === "exec") {
        // EXEC ran: every command was applied or failed on its own; no retry can undo that.
        const replies = reply.replies
        for (let i = 0; i < replies.length; i++) {
          const s = state.ops[i]!
          record(s, replies[i]![0])
          if (s.status === "pending") s.status = "failed"
        }
        return
      }
      const error = reply.error
      const fate = fateOf(error)
      if (fate === "unknown") {
        state.txUnknown = true
        settleAll(state, "pending", state.ops.every((s) => s.idempotent) ? notSent : unknownOutcome, error)
        return
      }
      const queued = (error as { previousErrors?: ReadonlyArray<unknown> }).previousErrors ?? [error]
      const classes = fate === "not_sent" ? [notSent] : queued.map((e) => classifyReply(messageOf(e)))
      const final = classes.find((c) => !c.retryable)
      settleAll(state, final === undefined ? "pending" : "failed", final ?? classes[0]!, queued[0] ?? error)
    })
  }

  /** Whether the lost transaction ran: `true`, `false`, or `undefined` when the probe failed. */
  const probe = (state: CallState): Promise<boolean | undefined> =>
    connection
      .pipeline([{ wire: "exists", args: [state.marker] }])
      .then(([reply]) => (reply![0] === null || reply![0] === undefined ? reply![1] === 1 : undefined))

  const runTransaction = (state: CallState): Effect.Effect<void> =>
    Effect.suspend(() => {
      if (state.inflight !== undefined) {
        const inflight = state.inflight
        return Effect.flatMap(
          Effect.promise(() => inflight),
          () => runTransaction(state)
        )
      }
      if (!state.ops.some((s) => s.status === "pending")) return Effect.void
      if (state.rounds >= maxAttempts) {
        for (const s of state.ops) {
          if (s.status !== "pending") continue
          s.status = "failed"
          if (state.txUnknown) s.unknown = true
        }
        return Effect.void
      }
      const send = Effect.flatMap(
        launch(state, async () => {
          if (state.txUnknown) {
            const ran = await probe(state)
            if (ran === undefined) return
            state.txUnknown = false
            if (ran) return settleAll(state, "applied")
          }
          return sendTransaction(state)
        }),
        () => runTransaction(state)
      )
      return state.rounds === 0 ? send : Effect.zipRight(pause(state), send)
    })

  /** The rows of failed commands, each with its command's error; `void` when all were written. */
  const finish = (state: CallState): undefined | BatchExecutor.Partial => {
    let failed: Array<BatchExecutor.RowError> | undefined
    let seen: Uint8Array | undefined
    for (const s of state.ops) {
      if (s.status !== "failed") continue
      const classification = s.classification ?? notSent
      const unknown = s.unknown || s.appliedOnce
      const error = new RedisCommandError({
        target: state.target.name,
        command: s.name,
        reason: classification.reason,
        retryable: classification.retryable,
        // Applied once, then re-sent to keep same-key order and that failed: its effect may remain.
        outcome: unknown ? "unknown" : "not_applied",
        sends: s.sends,
        cause: s.error ?? new Error(classification.reason)
      })
      failed ??= []
      seen ??= new Uint8Array(state.rowCount)
      const out = failed
      const marks = seen
      forEachRow(s, (index) => {
        if (marks[index] === 1) return
        marks[index] = 1
        out.push({ index, error })
        stats.failedRows++
        if (unknown) stats.unknownRows++
      })
    }
    if (failed === undefined) return undefined
    failed.sort((a, b) => a.index - b.index)
    return BatchExecutor.partial(failed)
  }

  const execute = (
    target: Target.Any,
    rows: ReadonlyArray<unknown>
  ): Effect.Effect<undefined | BatchExecutor.Partial, ExecutorError> =>
    Effect.suspend((): Effect.Effect<undefined | BatchExecutor.Partial, ExecutorError> => {
      if (!isRedisTarget(target)) {
        return Effect.fail(
          new ExecutorError({
            message: `Target "${target.name}" is not a Redis target: define it with Redis.set, Redis.hset, Redis.command or another Redis target constructor.`,
            retryable: false,
            reason: "invalid_target"
          })
        )
      }
      let state = calls.get(rows)
      if (state === undefined) {
        state = begin(target, rows)
        calls.set(rows, state)
      }
      const s = state
      return Effect.zipRight(
        reportOperation(s.report),
        Effect.map(s.transaction ? runTransaction(s) : runPipeline(s), () => finish(s))
      )
    })

  return {
    execute,
    rules: [rule] as ReadonlyArray<Retry.Rule>,
    stats: Effect.sync((): Stats => ({ ...stats }))
  }
}

/** The pending commands, or `undefined` when none is. */
const pendingOf = (ops: ReadonlyArray<Op>): Array<Op> | undefined => {
  let pending: Array<Op> | undefined
  for (let i = 0; i < ops.length; i++) {
    const s = ops[i]!
    if (s.status !== "pending") continue
    pending ??= []
    pending.push(s)
  }
  return pending
}
