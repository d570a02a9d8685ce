/**
 * Helpers for the metrics, Prometheus, tracing and logging tests: a flow built with the metrics
 * layer in a scope the test closes, metric values read from Effect's global registry by name and
 * label set (label order does not matter), and a small parser for Prometheus text.
 */
import {
  Context,
  type Duration,
  Effect,
  Exit,
  Fiber,
  Layer,
  Metric,
  MetricState,
  Scope,
  TestClock
} from "effect"
import { BatchExecutor, BatchFlow, type BatchFlowConfig } from "effect-batchflow"
import * as BatchFlowMetrics from "effect-batchflow/BatchFlowMetrics"

/** Labels unique to one test: metrics live in a process-global registry. */
export const labelsFor = (test: string) => {
  const instanceId = `${test}-${Math.random().toString(36).slice(2, 8)}`
  return { database: "memory", instanceId, tags: { database: "memory", instance_id: instanceId } }
}

export interface ObservedFlow {
  readonly flow: BatchFlow.BatchFlow
  readonly scope: Scope.CloseableScope
  /** Closes the flow's scope from a forked fiber, advancing the TestClock meanwhile. */
  readonly closeScope: (advance?: Duration.DurationInput) => Effect.Effect<void>
}

/** A flow over `executor` with `BatchFlowMetrics.layer(metrics)` (and `extra` layers) provided. */
export const startObservedFlow = (
  options: BatchFlowConfig.Options,
  executor: BatchExecutor.BatchExecutor,
  metrics: BatchFlowMetrics.Options | undefined,
  extra: Layer.Layer<never> = Layer.empty
): Effect.Effect<ObservedFlow> =>
  Effect.gen(function* () {
    const scope = yield* Scope.make()
    const base = BatchFlow.layer(options).pipe(
      Layer.provide(Layer.succeed(BatchExecutor.BatchExecutor, executor)),
      Layer.provide(extra)
    )
    const layer = metrics === undefined ? base : base.pipe(Layer.provide(BatchFlowMetrics.layer(metrics)))
    const ctx = yield* Layer.buildWithScope(layer, scope).pipe(Effect.orDie)
    const flow = Context.get(ctx, BatchFlow.BatchFlow)
    const closeScope = (advance: Duration.DurationInput = "1 minute") =>
      Effect.gen(function* () {
        const closing = yield* Effect.fork(Scope.close(scope, Exit.void))
        yield* TestClock.adjust(advance)
        yield* Fiber.join(closing)
      })
    return { flow, scope, closeScope }
  })

/** The state of the metric `name` whose labels are exactly `tags`, or undefined. */
export const stateOf = (
  name: string,
  tags: Readonly<Record<string, string>>
): MetricState.MetricState.Untyped | undefined => {
  const keys = Object.keys(tags)
  for (const pair of Metric.unsafeSnapshot()) {
    if (pair.metricKey.name !== name) continue
    const labels = pair.metricKey.tags
    if (labels.length !== keys.length) continue
    if (labels.every((label) => tags[label.key] === label.value)) return pair.metricState
  }
  return undefined
}

/** A counter's count (0 when the series does not exist). */
export const counter = (name: string, tags: Readonly<Record<string, string>>): number => {
  const state = stateOf(name, tags)
  if (state === undefined) return 0
  if (!MetricState.isCounterState(state)) throw new Error(`${name} is not a counter`)
  return Number(state.count)
}

/** A gauge's value (undefined when the series does not exist). */
export const gauge = (name: string, tags: Readonly<Record<string, string>>): number | undefined => {
  const state = stateOf(name, tags)
  if (state === undefined) return undefined
  if (!MetricState.isGaugeState(state)) throw new Error(`${name} is not a gauge`)
  return Number(state.value)
}

export interface HistogramValue {
  readonly count: number
  readonly sum: number
  /** Cumulative count at each upper bound. */
  readonly le: (bound: number) => number
}

/** A histogram's count, sum and cumulative buckets (all 0 when the series does not exist). */
export const histogram = (name: string, tags: Readonly<Record<string, string>>): HistogramValue => {
  const state = stateOf(name, tags)
  if (state === undefined) return { count: 0, sum: 0, le: () => 0 }
  if (!MetricState.isHistogramState(state)) throw new Error(`${name} is not a histogram`)
  return {
    count: state.count,
    sum: state.sum,
    le: (bound) => {
      const bucket = state.buckets.find(([b]) => b === bound)
      if (bucket === undefined) throw new Error(`${name} has no bucket ${bound}`)
      return bucket[1]
    }
  }
}

/** Every batchflow_* series with its state, to compare before and after. */
export const batchflowSnapshot = (): Map<string, string> => {
  const out = new Map<string, string>()
  for (const pair of Metric.unsafeSnapshot()) {
    if (!pair.metricKey.name.startsWith("batchflow_")) continue
    const labels = pair.metricKey.tags.map((l) => `${l.key}=${l.value}`).join(",")
    out.set(
      `${pair.metricKey.name}{${labels}}`,
      JSON.stringify(pair.metricState, (_, v) => (typeof v === "bigint" ? Number(v) : v))
    )
  }
  return out
}

// ---------------------------------------------------------------- Prometheus text

export interface Sample {
  readonly name: string
  readonly labels: Readonly<Record<string, string>>
  readonly value: number
}

const sampleLine = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/
const labelPair = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g

export const parsePrometheus = (text: string): Array<Sample> => {
  const samples: Array<Sample> = []
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#")) continue
    const match = sampleLine.exec(line)
    if (match === null) continue
    const labels: Record<string, string> = {}
    for (const [, key, value] of (match[2] ?? "").matchAll(labelPair)) labels[key!] = value!
    samples.push({ name: match[1]!, labels, value: Number(match[3]) })
  }
  return samples
}

/** The samples named `name` whose labels include `labels`. */
export const select = (
  samples: ReadonlyArray<Sample>,
  name: string,
  labels: Readonly<Record<string, string>>
): Array<Sample> =>
  samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))

/** The one sample named `name` with `labels` (fails unless exactly one matches). */
export const sampleValue = (
  samples: ReadonlyArray<Sample>,
  name: string,
  labels: Readonly<Record<string, string>>
): number => {
  const found = select(samples, name, labels)
  if (found.length !== 1) {
    throw new Error(`expected one ${name}${JSON.stringify(labels)}, found ${found.length}`)
  }
  return found[0]!.value
}

/** GET `url` (a /metrics endpoint): the status and the body. */
export const scrape = (url: string): Effect.Effect<{ readonly status: number; readonly text: string }> =>
  Effect.promise(async () => {
    const response = await fetch(url)
    return { status: response.status, text: await response.text() }
  })

/** The sum of the samples named `name` whose labels include `labels` (0 when none). */
export const sumValues = (
  samples: ReadonlyArray<Sample>,
  name: string,
  labels: Readonly<Record<string, string>>
): number => select(samples, name, labels).reduce((n, s) => n + s.value, 0)
