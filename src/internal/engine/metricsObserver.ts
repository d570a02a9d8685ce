/**
 * The engine observer behind `BatchFlowMetrics.layer`: turns the engine's observation points into
 * metric updates.
 *
 * Cost: every callback is synchronous and calls `unsafeUpdate` with a label array built once and
 * then reused. Effect caches a metric's hook per label-array identity, so an update with a cached
 * array is a `WeakMap` lookup plus the hook's update; building a fresh array (or `Metric.tagged`)
 * would look the metric up in the global registry, hashing its key, on every update.
 */
import type * as Metric from "effect/Metric"
import * as MetricLabel from "effect/MetricLabel"
import type { Observer } from "./observer.js"

type Labels = ReadonlyArray<MetricLabel.MetricLabel>

/** @internal */
export interface Metrics {
  readonly enqueueLatency: Metric.Metric.Histogram<number>
  readonly queueLength: Metric.Metric.Gauge<number>
  readonly submitRejected: Metric.Metric.Counter<number>
  readonly flushes: Metric.Metric.Counter<number>
  readonly flushSize: Metric.Metric.Histogram<number>
  readonly groupsPerFlush: Metric.Metric.Histogram<number>
  readonly dequeueLatency: Metric.Metric.Histogram<number>
  readonly oldestRowWait: Metric.Metric.Gauge<number>
  readonly batchAssembleDuration: Metric.Metric.Histogram<number>
  readonly processDuration: Metric.Metric.Histogram<number>
  readonly dropped: Metric.Metric.Counter<number>
  readonly batchSize: Metric.Metric.Histogram<number>
  readonly executeDuration: Metric.Metric.Histogram<number>
  readonly inflightBatches: Metric.Metric.Gauge<number>
  readonly executorConcurrency: Metric.Metric.Gauge<number>
  readonly errors: Metric.Metric.Counter<number>
  readonly targetRows: Metric.Metric.Counter<number>
  readonly targetLateRows: Metric.Metric.Counter<number>
  readonly targetRetries: Metric.Metric.Counter<number>
  readonly targetFailures: Metric.Metric.Counter<number>
  readonly operationGeneratedItems: Metric.Metric.Histogram<number>
  readonly operationGeneratedArgs: Metric.Metric.Histogram<number>
  readonly sqlGeneratedRows: Metric.Metric.Histogram<number>
  readonly sqlGeneratedArgs: Metric.Metric.Histogram<number>
  readonly sqlDeduplicatedRows: Metric.Metric.Counter<number>
}

/** @internal */
export interface LabelOptions {
  readonly database: string
  readonly instanceId: string | undefined
  readonly includeTarget: boolean
}

/**
 * Label arrays by their extra labels, made once: the base labels (`database`, `instance_id`) first,
 * then the extra pairs in the order given.
 *
 * @internal
 */
export const labelCache = (options: LabelOptions) => {
  const base: Labels = [
    MetricLabel.make("database", options.database),
    ...(options.instanceId === undefined ? [] : [MetricLabel.make("instance_id", options.instanceId)])
  ]
  const cache = new Map<string, Labels>()
  /** `pairs`: key, value, key, value… */
  const labels = (...pairs: ReadonlyArray<string>): Labels => {
    if (pairs.length === 0) return base
    const id = pairs.join("\u0000")
    let found = cache.get(id)
    if (found === undefined) {
      const extra: Array<MetricLabel.MetricLabel> = []
      for (let i = 0; i < pairs.length; i += 2) extra.push(MetricLabel.make(pairs[i]!, pairs[i + 1]!))
      found = [...base, ...extra]
      cache.set(id, found)
    }
    return found
  }
  return { base, labels }
}

/** @internal */
export const make = (m: Metrics, options: LabelOptions): Observer => {
  const { base, labels } = labelCache(options)
  /** The seed's optional `table` label, here `target`: only with `includeTarget`. */
  const optionalTarget = (target: string, ...pairs: ReadonlyArray<string>): Labels =>
    options.includeTarget ? labels("target", target, ...pairs) : labels(...pairs)
  return {
    submitWaited: (_target, millis) => m.enqueueLatency.unsafeUpdate(millis / 1000, base),
    submitRejected: (_target, reason) => m.submitRejected.unsafeUpdate(1, labels("reason", reason)),
    batchTaken: (batch) => {
      const waited = batch.waitedMillis / 1000
      m.flushes.unsafeUpdate(1, labels("trigger", batch.trigger))
      m.flushSize.unsafeUpdate(batch.rows, base)
      m.groupsPerFlush.unsafeUpdate(batch.groups, base)
      m.dequeueLatency.unsafeUpdate(waited, base)
      m.oldestRowWait.unsafeUpdate(waited, base)
      m.batchAssembleDuration.unsafeUpdate(batch.assembleMillis / 1000, base)
    },
    attemptFailed: (target, reason, final) => {
      m.errors.unsafeUpdate(1, optionalTarget(target, "error_type", `${final ? "final" : "retry"}:${reason}`))
      if (!final) m.targetRetries.unsafeUpdate(1, labels("target", target))
    },
    executed: (call) => {
      m.batchSize.unsafeUpdate(call.rows, optionalTarget(call.target))
      m.executeDuration.unsafeUpdate(
        call.durationMillis / 1000,
        optionalTarget(call.target, "status", call.status)
      )
    },
    groupFinished: (group) => {
      if (group.rows === 0) return
      if (group.outcome === "success") {
        m.targetRows.unsafeUpdate(group.rows, labels("target", group.target, "outcome", "committed"))
      } else {
        const outcome = group.outcome === "failure" ? "failed" : "unknown_outcome"
        m.targetRows.unsafeUpdate(group.rows, labels("target", group.target, "outcome", outcome))
        m.targetFailures.unsafeUpdate(1, labels("target", group.target, "reason", group.reason))
      }
    },
    lateOutcome: (target, committed, failed) => {
      if (committed > 0)
        m.targetLateRows.unsafeUpdate(committed, labels("target", target, "outcome", "committed"))
      if (failed > 0) m.targetLateRows.unsafeUpdate(failed, labels("target", target, "outcome", "failed"))
    },
    failureDropped: (reason) => m.dropped.unsafeUpdate(1, labels("reason", reason)),
    depth: (buffered, inFlight) => {
      m.queueLength.unsafeUpdate(buffered, base)
      m.inflightBatches.unsafeUpdate(inFlight, base)
    },
    started: (info) => m.executorConcurrency.unsafeUpdate(info.concurrency, base),
    batchFinished: (batch) =>
      m.processDuration.unsafeUpdate(
        batch.durationMillis / 1000,
        labels("status", batch.failed ? "fail" : "success")
      ),
    operation: (report) => {
      const backend = report.backend === "" ? "unknown" : report.backend
      const operation = report.operation === "" ? "unknown" : report.operation
      m.operationGeneratedItems.unsafeUpdate(
        report.inputRows,
        optionalTarget(report.target, "backend", backend, "operation", operation, "kind", "input")
      )
      m.operationGeneratedItems.unsafeUpdate(
        report.outputRows,
        optionalTarget(report.target, "backend", backend, "operation", operation, "kind", "output")
      )
      m.operationGeneratedArgs.unsafeUpdate(
        report.args,
        optionalTarget(report.target, "backend", backend, "operation", operation)
      )
      if (report.commands !== undefined) {
        m.operationGeneratedItems.unsafeUpdate(
          report.commands,
          optionalTarget(report.target, "backend", backend, "operation", operation, "kind", "commands")
        )
      }
      if (backend !== "sql") return
      m.sqlGeneratedRows.unsafeUpdate(report.inputRows, optionalTarget(report.target, "kind", "input"))
      m.sqlGeneratedRows.unsafeUpdate(report.outputRows, optionalTarget(report.target, "kind", "output"))
      m.sqlGeneratedArgs.unsafeUpdate(report.args, optionalTarget(report.target))
      const dedupe = report.dedupe
      if (dedupe === undefined) return
      if (dedupe.deduplicated > 0) {
        m.sqlDeduplicatedRows.unsafeUpdate(
          dedupe.deduplicated,
          optionalTarget(report.target, "strategy", dedupe.strategy, "kind", "deduplicated")
        )
      }
      if (dedupe.merged > 0) {
        m.sqlDeduplicatedRows.unsafeUpdate(
          dedupe.merged,
          optionalTarget(report.target, "strategy", dedupe.strategy, "kind", "merged")
        )
      }
    }
  }
}
