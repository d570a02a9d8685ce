/**
 * Metrics: Effect `Metric` constants for every metric of the seed's spec (prefix `batchflow_`, same
 * types, labels and meanings where they apply), plus the flush trigger, the oldest row's wait and
 * per-target outcomes. `layer` makes a flow update them; without it the engine updates nothing.
 *
 * Every metric is recorded per batch or per executor call, never per row, except the two per-submit
 * facts that only concern submits that did not go through at once (a submit that waited for room, a
 * rejected submit). `docs/guides/metrics-spec.md` says exactly what each one samples and when.
 *
 * Labels: `database` (always, default `unknown`) and `instance_id` (when given) on every metric;
 * `target` on the seed's per-execution metrics only with `includeTarget` (cardinality), and always on
 * the `batchflow_target_*` metrics. Serve them with `Prometheus.layer`.
 *
 * @since 0.1.0
 */
import type * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as MetricBoundaries from "effect/MetricBoundaries"
import type * as BatchFlowConfig from "./BatchFlowConfig.js"
import { make as makeObserver } from "./internal/engine/metricsObserver.js"
import * as observer from "./internal/engine/observer.js"

const names: Array<string> = []

const counter = (name: string, description: string): Metric.Metric.Counter<number> => {
  names.push(name)
  return Metric.counter(name, { description, incremental: true })
}

const gauge = (name: string, description: string): Metric.Metric.Gauge<number> => {
  names.push(name)
  return Metric.gauge(name, { description })
}

const histogram = (
  name: string,
  boundaries: MetricBoundaries.MetricBoundaries,
  description: string
): Metric.Metric.Histogram<number> => {
  names.push(name)
  return Metric.histogram(name, boundaries, description)
}

/**
 * The seed's latency buckets, `ExponentialBuckets(0.0005, 2, 18)`: 0.5 ms … 65.5 s (seconds).
 *
 * @since 0.1.0
 * @category boundaries
 */
export const latencyBoundaries: MetricBoundaries.MetricBoundaries = MetricBoundaries.exponential({
  start: 0.0005,
  factor: 2,
  count: 19
})

/**
 * The seed's size buckets, `ExponentialBuckets(1, 2, 12)`: 1 … 2048 rows.
 *
 * @since 0.1.0
 * @category boundaries
 */
export const sizeBoundaries: MetricBoundaries.MetricBoundaries = MetricBoundaries.exponential({
  start: 1,
  factor: 2,
  count: 13
})

/**
 * The seed's argument-count buckets, `ExponentialBuckets(1, 2, 16)`: 1 … 32768.
 *
 * @since 0.1.0
 * @category boundaries
 */
export const argsBoundaries: MetricBoundaries.MetricBoundaries = MetricBoundaries.exponential({
  start: 1,
  factor: 2,
  count: 17
})

/**
 * The seed's groups-per-flush buckets, `ExponentialBuckets(1, 2, 8)`: 1 … 128.
 *
 * @since 0.1.0
 * @category boundaries
 */
export const groupsBoundaries: MetricBoundaries.MetricBoundaries = MetricBoundaries.exponential({
  start: 1,
  factor: 2,
  count: 9
})

// ---------------------------------------------------------------- submit / queue

/**
 * Seconds a submit spent waiting for room in a full buffer. Only submits that had to wait are
 * sampled (one sample each, when it is accepted); submits accepted at once are not (timing them
 * would cost more than the submit itself).
 *
 * @since 0.1.0
 * @category metrics
 */
export const enqueueLatency = histogram(
  "batchflow_enqueue_latency_seconds",
  latencyBoundaries,
  "Seconds a submit waited for room in the full buffer (only submits that had to wait are sampled)."
)

/**
 * Rows in the buffer, not yet taken by a flush. Set per batch: when a batch is taken and when a
 * group finishes (not per submit).
 *
 * @since 0.1.0
 * @category metrics
 */
export const queueLength = gauge(
  "batchflow_pipeline_queue_length",
  "Rows buffered and not yet taken by a flush; set when a batch is taken and when a group finishes."
)

/**
 * Rejected submits, by `reason`: `closed` (the flow is closing or closed), `invalid_row` (the row
 * does not match its target's schema) or `full` (`unsafeOffer` found no room and returned `false`).
 *
 * @since 0.1.0
 * @category metrics
 */
export const submitRejected = counter(
  "batchflow_submit_rejected_total",
  "Rejected submit, submitAll, write and unsafeOffer calls, by reason (closed, invalid_row, full)."
)

// ---------------------------------------------------------------- pipeline / flush

/**
 * Flushes (batches taken off the buffer), by `trigger`: `size` (a full batch), `interval`
 * (flushInterval elapsed), `manual` (`flush`), `close`, `backpressure` (a submitter waits for room).
 *
 * @since 0.1.0
 * @category metrics
 */
export const flushes = counter(
  "batchflow_flushes_total",
  "Batches taken off the buffer, by trigger (size, interval, manual, close, backpressure)."
)

/**
 * Rows per flush, all targets together (one sample per flush).
 *
 * @since 0.1.0
 * @category metrics
 */
export const flushSize = histogram(
  "batchflow_pipeline_flush_size",
  sizeBoundaries,
  "Rows per flush, all targets together (one sample per flush)."
)

/**
 * Targets (groups) per flush (one sample per flush).
 *
 * @since 0.1.0
 * @category metrics
 */
export const groupsPerFlush = histogram(
  "batchflow_schema_groups_per_flush",
  groupsBoundaries,
  "Targets (groups) per flush (one sample per flush)."
)

/**
 * Seconds the oldest row of a flush waited in the buffer before the flush took it (one sample per
 * flush; every other row of the flush waited less). The seed samples every row; this samples the
 * batch's worst case.
 *
 * @since 0.1.0
 * @category metrics
 */
export const dequeueLatency = histogram(
  "batchflow_pipeline_dequeue_latency_seconds",
  latencyBoundaries,
  "Seconds the oldest row of a flush waited in the buffer (one sample per flush)."
)

/**
 * Seconds the oldest row of the latest flush waited in the buffer: the last value of
 * `dequeueLatency`, for alerting on stuck or slow flushes.
 *
 * @since 0.1.0
 * @category metrics
 */
export const oldestRowWait = gauge(
  "batchflow_oldest_row_wait_seconds",
  "Seconds the oldest row of the latest flush waited in the buffer; set per flush."
)

/**
 * Seconds to take a flush's rows off the buffer and group them by target (one sample per flush).
 *
 * @since 0.1.0
 * @category metrics
 */
export const batchAssembleDuration = histogram(
  "batchflow_batch_assemble_duration_seconds",
  latencyBoundaries,
  "Seconds to take a flush's rows off the buffer and group them by target (one sample per flush)."
)

/**
 * Seconds from taking a flush to the end of its last group (retries and backoff included), by
 * `status`: `fail` when any rows of the flush were reported as failed, else `success`.
 *
 * @since 0.1.0
 * @category metrics
 */
export const processDuration = histogram(
  "batchflow_pipeline_process_duration_seconds",
  latencyBoundaries,
  "Seconds from taking a flush to the end of its last group, by status (success, fail)."
)

/**
 * Things dropped, by `reason`: `failure_buffer_full` (a `BatchFailure` dropped because the
 * `failures` stream's buffer was full; it was still logged).
 *
 * @since 0.1.0
 * @category metrics
 */
export const dropped = counter(
  "batchflow_pipeline_dropped_total",
  "Things dropped, by reason (failure_buffer_full: a BatchFailure the failures stream had no room for; on_failure_full: one the onFailure queue had no room for; dead_letter_full: dead-letter rows not written)."
)

// ---------------------------------------------------------------- executor

/**
 * Rows per executor call (one sample per call: a target's group of one flush, or a part of it when
 * rows are isolated), as given to the executor, before any backend dedupe.
 *
 * @since 0.1.0
 * @category metrics
 */
export const batchSize = histogram(
  "batchflow_batch_size",
  sizeBoundaries,
  "Rows per executor call (one target's group of a flush), before backend dedupe."
)

/**
 * Seconds per executor call from the first attempt to the end of the last, retries and backoff
 * included, by `status`: `success`, `partial` (some rows not written) or `fail`.
 *
 * @since 0.1.0
 * @category metrics
 */
export const executeDuration = histogram(
  "batchflow_execute_duration_seconds",
  latencyBoundaries,
  "Seconds per executor call, retries and backoff included, by status (success, partial, fail)."
)

/**
 * Groups taken by a flush and not finished: waiting for an earlier same-key group or a permit,
 * executing, or backing off. Set per batch.
 *
 * @since 0.1.0
 * @category metrics
 */
export const inflightBatches = gauge(
  "batchflow_inflight_batches",
  "Groups taken by a flush and not finished (waiting for a permit, executing or backing off)."
)

/**
 * The configured `concurrency` (executor calls at once). Set when the flow starts.
 *
 * @since 0.1.0
 * @category metrics
 */
export const executorConcurrency = gauge(
  "batchflow_executor_concurrency",
  "Configured concurrency: executor calls at once."
)

/**
 * Failed attempts, by `error_type`: `retry:<reason>` when the attempt is retried, `final:<reason>`
 * when it is not (the reason dictionary: docs/guides/error-classification.md).
 *
 * @since 0.1.0
 * @category metrics
 */
export const errors = counter(
  "batchflow_errors_total",
  "Failed attempts by error_type: retry:<reason> (retried) or final:<reason> (not retried)."
)

// ---------------------------------------------------------------- per target (beyond the seed)

/**
 * Rows by `target` and `outcome`: `committed`, `failed` (reported in a `BatchFailure`, not written)
 * or `unknown_outcome` (reported, maybe written).
 *
 * @since 0.1.0
 * @category metrics
 */
export const targetRows = counter(
  "batchflow_target_rows_total",
  "Rows by target and outcome (committed, failed, unknown_outcome)."
)

/**
 * Rows reported as `unknown_outcome` whose abandoned attempt answered later, by `target` and
 * `outcome` (`committed` or `failed`): the real outcome, for reconciliation.
 *
 * @since 0.1.0
 * @category metrics
 */
export const targetLateRows = counter(
  "batchflow_target_late_rows_total",
  "Rows reported as unknown_outcome whose abandoned attempt answered later, by target and real outcome (committed, failed)."
)

/**
 * Retried attempts by `target`.
 *
 * @since 0.1.0
 * @category metrics
 */
export const targetRetries = counter("batchflow_target_retries_total", "Retried attempts, by target.")

/**
 * `BatchFailure`s reported, by `target` and `reason`.
 *
 * @since 0.1.0
 * @category metrics
 */
export const targetFailures = counter(
  "batchflow_target_failures_total",
  "BatchFailures reported (rows not written), by target and reason."
)

// ---------------------------------------------------------------- backend operations

/**
 * Rows per generated operation, by `backend`, `operation` and `kind` (`input`: rows given,
 * `output`: rows after dedupe/coalescing). One pair of samples per attempt, from `reportOperation`;
 * a third, `kind=commands` (commands or statements generated), when the report counts them (both
 * built-in backends do).
 *
 * @since 0.1.0
 * @category metrics
 */
export const operationGeneratedItems = histogram(
  "batchflow_operation_generated_items",
  sizeBoundaries,
  "Rows (kind input, output) or commands (kind commands) per generated operation, by backend and operation; per attempt."
)

/**
 * Arguments (bind parameters, command arguments) per generated operation, by `backend` and
 * `operation`. One sample per attempt, from `reportOperation`.
 *
 * @since 0.1.0
 * @category metrics
 */
export const operationGeneratedArgs = histogram(
  "batchflow_operation_generated_args",
  argsBoundaries,
  "Arguments per generated operation by backend and operation; per attempt."
)

/**
 * Like `operationGeneratedItems`, for the `sql` backend only, by `kind` (`input`, `output`).
 *
 * @since 0.1.0
 * @category metrics
 */
export const sqlGeneratedRows = histogram(
  "batchflow_sql_generated_rows",
  sizeBoundaries,
  "Rows per generated SQL batch by kind (input, output); per attempt."
)

/**
 * Bind parameters per generated SQL batch (all its statements). One sample per attempt.
 *
 * @since 0.1.0
 * @category metrics
 */
export const sqlGeneratedArgs = histogram(
  "batchflow_sql_generated_args",
  argsBoundaries,
  "Bind parameters per generated SQL batch; per attempt."
)

/**
 * Rows removed by in-batch dedupe, by `strategy` and `kind` (`deduplicated`: dropped as a duplicate,
 * `merged`: folded into another row). Only incremented when > 0; per attempt.
 *
 * @since 0.1.0
 * @category metrics
 */
export const sqlDeduplicatedRows = counter(
  "batchflow_sql_deduplicated_rows_total",
  "Rows removed by in-batch dedupe, by strategy and kind (deduplicated, merged); per attempt."
)

/**
 * The name of every metric in this module, as it appears on /metrics (counters end in `_total`;
 * histograms add `_bucket`, `_sum` and `_count`).
 *
 * @since 0.1.0
 * @category metadata
 */
export const metricNames: ReadonlyArray<string> = names

// ---------------------------------------------------------------- layer

/**
 * The labels: see `BatchFlowConfig.MetricsOptions`.
 *
 * @since 0.1.0
 * @category models
 */
export type Options = BatchFlowConfig.MetricsOptions

/**
 * A layer that makes every flow built with it update the metrics of this module. Provide it to the
 * flow's layer (`BatchFlow.layer(...).pipe(Layer.provide(BatchFlowMetrics.layer(...)))`). The gauges
 * are per label set: two flows with the same `database` and `instance_id` overwrite each other's.
 *
 * @deprecated Give the flow the option instead: `BatchFlow.layer({ metrics: { database: "pg" } })`.
 * This layer is looked up as an optional service: provided in the wrong place it is ignored, with no
 * type error.
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options = {}): Layer.Layer<observer.EngineObserver> =>
  Layer.sync(observer.EngineObserver, () => makeMetricsObserver(options))

/**
 * The observer that updates these metrics (the flow's `metrics` option).
 *
 * @internal
 */
export const makeMetricsObserver = (options: Options): observer.Observer =>
  makeObserver(
    {
      enqueueLatency,
      queueLength,
      submitRejected,
      flushes,
      flushSize,
      groupsPerFlush,
      dequeueLatency,
      oldestRowWait,
      batchAssembleDuration,
      processDuration,
      dropped,
      batchSize,
      executeDuration,
      inflightBatches,
      executorConcurrency,
      errors,
      targetRows,
      targetLateRows,
      targetRetries,
      targetFailures,
      operationGeneratedItems,
      operationGeneratedArgs,
      sqlGeneratedRows,
      sqlGeneratedArgs,
      sqlDeduplicatedRows
    },
    {
      database: options.database ?? "unknown",
      instanceId: options.instanceId,
      includeTarget: options.includeTarget ?? false
    }
  )

/**
 * What a backend generated for one attempt of one executor call.
 *
 * @since 0.1.0
 * @category models
 */
export interface OperationReport extends observer.OperationReport {}

/**
 * For executors: report what was generated for one attempt (rows in and out, arguments, commands,
 * dedupe). Feeds `batchflow_operation_generated_*` and, for backend `sql`,
 * `batchflow_sql_generated_*` and `batchflow_sql_deduplicated_rows_total`. Does nothing when the flow
 * has no metrics layer. Call it once per attempt, from inside `execute`.
 *
 * @since 0.1.0
 * @category backends
 */
export const reportOperation: (report: OperationReport) => Effect.Effect<void> = observer.reportOperation
