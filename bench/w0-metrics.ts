/**
 * W0 with metrics: the W0 workload (bench/w0.ts: 4 producers, buffer 10,000, flushSize 500,
 * flushInterval 50 ms, concurrency 4, retry on, an executor that counts rows) run with
 * the `metrics` option and without it, interleaved in the same run, for per-row
 * `submit` and for `submitAll` of 500-row arrays. A third variant turns Effect's tracer off
 * (`Effect.withTracerEnabled(false)`) to show what the engine's per-batch spans cost.
 *
 * On a shared machine wall-clock rates are noisy, so the run also reports process CPU time per row
 * for each variant, and a micro-benchmark of the per-batch work alone: the observer callbacks one
 * batch of one target triggers, and the two spans per batch (flush, execute attempt).
 *
 *   npx tsx bench/w0-metrics.ts [--rows 1000000] [--runs 3] [--json out.json]
 */
import { Effect } from "effect"
import { BatchExecutor, BatchFlow } from "effect-batchflow"
import * as BatchFlowMetrics from "effect-batchflow/BatchFlowMetrics"
import type { Observer } from "effect-batchflow/internal/engine/observer"
import { parseArgs, report, type Sample, time } from "./util.js"
import { config, produce } from "./w0-workload.js"

type Observability = "metrics off" | "metrics on" | "metrics off, tracer off"

const runFlow = (
  rows: number,
  mode: "submit" | "submitAll",
  observability: Observability
): Promise<number> => {
  const memory = BatchExecutor.memory({ keepRows: false })
  const flowLayer = BatchFlow.layer({
    ...config,
    executors: [BatchExecutor.forAll(memory)],
    metrics: observability === "metrics on" ? { database: "bench", instanceId: "w0" } : false
  })
  const program = produce(rows, mode).pipe(Effect.provide(flowLayer))
  const run = observability === "metrics off, tracer off" ? Effect.withTracerEnabled(program, false) : program
  return Effect.runPromise(run).then((submitted) => {
    if (memory.rowCount() !== submitted) {
      throw new Error(`integrity: ${memory.rowCount()} rows written, expected ${submitted}`)
    }
    return memory.rowCount()
  })
}

const median = (xs: ReadonlyArray<number>): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]!
}

/** Runs `body` and returns its process CPU time (user + system), in µs. */
const cpuOf = async (body: () => Promise<unknown>): Promise<number> => {
  const before = process.cpuUsage()
  await body()
  const used = process.cpuUsage(before)
  return used.user + used.system
}

/** µs per batch of the observer callbacks for one batch of one target (what the engine calls). */
const observerMicros = (observer: Observer, batches: number): number => {
  const start = performance.now()
  for (let i = 0; i < batches; i++) {
    observer.batchTaken({
      trigger: "size",
      rows: 500,
      groups: 1,
      buffered: i % 10_000,
      waitedMillis: 3,
      assembleMillis: 0.01
    })
    observer.depth(i % 10_000, 1)
    observer.executed({
      target: "bench_events",
      rows: 500,
      attempts: 1,
      durationMillis: 2,
      status: "success"
    })
    observer.groupFinished({
      target: "bench_events",
      rows: 500,
      attempts: 1,
      durationMillis: 2,
      outcome: "success",
      reason: ""
    })
    observer.depth(i % 10_000, 0)
    observer.batchFinished({ trigger: "size", rows: 500, groups: 1, durationMillis: 2, failed: false })
  }
  return ((performance.now() - start) * 1000) / batches
}

/** µs per batch of the two spans the engine opens per batch, against the same work without them. */
const spanMicros = (batches: number, traced: boolean): number => {
  const body = Effect.onExit(Effect.void, () =>
    Effect.annotateCurrentSpan({ "batchflow.outcome": "success" })
  )
  const attempt = traced
    ? Effect.withSpan(body, "BatchFlow.execute", {
        attributes: { "batchflow.target": "t", "batchflow.rows": 500, "batchflow.attempt": 1 },
        captureStackTrace: false
      })
    : body
  const flush = traced
    ? Effect.withSpan(
        Effect.zipRight(attempt, Effect.annotateCurrentSpan("batchflow.outcome", "success")),
        "BatchFlow.flush",
        {
          attributes: { "batchflow.trigger": "size", "batchflow.rows": 500, "batchflow.groups": 1 },
          links: [],
          captureStackTrace: false
        }
      )
    : attempt
  const loop = Effect.forEach(Array.from({ length: batches }), () => flush, { discard: true })
  const start = performance.now()
  Effect.runSync(loop)
  return ((performance.now() - start) * 1000) / batches
}

const perBatchCosts = () => {
  const observer = BatchFlowMetrics.makeMetricsObserver({ database: "bench", instanceId: "micro" })
  const batches = 200_000
  const samples = {
    observer: [] as Array<number>,
    traced: [] as Array<number>,
    untraced: [] as Array<number>
  }
  for (let r = 0; r < 7; r++) {
    samples.observer.push(observerMicros(observer, batches))
    samples.traced.push(spanMicros(batches / 4, true))
    samples.untraced.push(spanMicros(batches / 4, false))
  }
  const obs = median(samples.observer)
  const spans = median(samples.traced) - median(samples.untraced)
  console.log("\nPer-batch work alone (median of 7; µs per batch, and per row at flushSize 500):\n")
  console.log("| work | µs per batch | µs per row |")
  console.log("|---|---:|---:|")
  console.log(
    `| BatchFlowMetrics observer (6 callbacks, ~14 metric updates) | ${obs.toFixed(2)} | ${(obs / 500).toFixed(4)} |`
  )
  console.log(`| two spans (Effect native tracer) | ${spans.toFixed(2)} | ${(spans / 500).toFixed(4)} |`)
}

const main = async () => {
  const args = parseArgs(process.argv.slice(2), { rows: 1_000_000, runs: 3 })
  perBatchCosts()
  const observabilities: ReadonlyArray<Observability> = [
    "metrics off",
    "metrics on",
    "metrics off, tracer off"
  ]
  for (const mode of ["submit", "submitAll"] as const) {
    const variants: Record<string, (rows: number) => Promise<number>> = {}
    for (const o of observabilities) variants[`${mode}: ${o}`] = (rows) => runFlow(rows, mode, o)
    for (const run of Object.values(variants)) await run(100_000)
    const samples: Array<Sample> = []
    const cpu = new Map<string, Array<number>>()
    for (let r = 0; r < args.runs; r++) {
      const order = Object.keys(variants)
      if (r % 2 === 1) order.reverse()
      for (const name of order) {
        let sample: Sample | undefined
        const micros = await cpuOf(async () => {
          sample = await time(name, r, () => variants[name]!(args.rows))
        })
        samples.push(sample!)
        cpu.set(name, [...(cpu.get(name) ?? []), micros / args.rows])
      }
    }
    const json = args.json === undefined ? undefined : args.json.replace(/(\.json)?$/, `-${mode}.json`)
    report(`W0 with and without BatchFlowMetrics, ${mode}`, samples, `${mode}: metrics off`, json)
    const base = median(cpu.get(`${mode}: metrics off`)!)
    console.log("\n| variant | median CPU µs per row | ratio to metrics off |")
    console.log("|---|---:|---:|")
    for (const [name, xs] of cpu)
      console.log(`| ${name} | ${median(xs).toFixed(3)} | ${(median(xs) / base).toFixed(2)} |`)
  }
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
