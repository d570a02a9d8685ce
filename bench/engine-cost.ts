/**
 * What the engine costs in Node CPU (user + system, `process.cpuUsage`), with an executor that only
 * counts rows: µs per row of per-row `submit` and of `submitAll` (500-row arrays), and µs per batch
 * (CPU at flushSize 500 minus CPU at flushSize 5,000, per 500-row batch). Rounds are interleaved and
 * reported as median (min–max). CPU time, not wall time, so that it can be read on a busy machine.
 *
 * `--async 1`: the executor answers on a later turn of the event loop (`setImmediate`), as a database
 * driver's callback does, instead of at once: the engine's path for every real backend (workers
 * waiting for their group, submitters waiting for room, the attempt's deadline timer).
 *
 *   npx tsx bench/engine-cost.ts [--rows 400000] [--runs 5] [--async 1]
 */
import { Effect } from "effect"
import { BatchExecutor, BatchFlow } from "effect-batchflow"
import { parseArgs } from "./util.js"
import { config, produce } from "./w0-workload.js"

/** Counts rows like `BatchExecutor.memory`, but answers on the next turn of the event loop. */
const later = (): BatchExecutor.BatchExecutor & { readonly rowCount: () => number } => {
  let count = 0
  return {
    rules: [],
    execute: (_target, rows) =>
      Effect.async<void>((resume) => {
        setImmediate(() => {
          count += rows.length
          resume(Effect.void)
        })
      }),
    rowCount: () => count
  }
}

const cpuOf = async (
  rows: number,
  mode: "submit" | "submitAll",
  flushSize: number,
  async: boolean
): Promise<number> => {
  const memory = async ? later() : BatchExecutor.memory({ keepRows: false })
  const program = produce(rows, mode).pipe(
    Effect.provide(
      BatchFlow.layer({
        ...config,
        flushSize,
        bufferSize: Math.max(config.bufferSize, 2 * flushSize),
        executors: [BatchExecutor.forAll(memory)]
      })
    )
  )
  const start = process.cpuUsage()
  const submitted = await Effect.runPromise(program)
  const used = process.cpuUsage(start)
  if (memory.rowCount() !== submitted) throw new Error(`integrity: ${memory.rowCount()} of ${submitted}`)
  return used.user + used.system
}

const median = (xs: ReadonlyArray<number>): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 === 1 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
}

const show = (name: string, xs: ReadonlyArray<number>, unit: string): void => {
  const fmt = (x: number) => x.toFixed(unit === "µs/row" ? 3 : 1)
  console.log(
    `${name.padEnd(34)} ${fmt(median(xs))} ${unit} (${fmt(Math.min(...xs))}–${fmt(Math.max(...xs))}, ${xs.length} runs)`
  )
}

const main = async () => {
  const args = parseArgs(process.argv.slice(2), { rows: 400_000, runs: 5, async: 0 })
  const rows = args.rows
  const async = args.async !== 0
  const variants = {
    submit: (fs: number) => cpuOf(rows, "submit", fs, async),
    submitAll: (fs: number) => cpuOf(rows, "submitAll", fs, async)
  }
  for (const run of Object.values(variants)) {
    await run(500)
    await run(5000)
  }
  const perRow: Record<string, Array<number>> = { submit: [], submitAll: [] }
  const perBatch: Record<string, Array<number>> = { submit: [], submitAll: [] }
  for (let r = 0; r < args.runs; r++) {
    const names = Object.keys(variants) as Array<keyof typeof variants>
    if (r % 2 === 1) names.reverse()
    for (const name of names) {
      const small = await variants[name](500)
      const big = await variants[name](5000)
      perRow[name]!.push(small / rows)
      perBatch[name]!.push((small - big) / (rows / 500 - rows / 5000))
    }
  }
  for (const name of Object.keys(variants)) show(`${name} (flushSize 500)`, perRow[name]!, "µs/row")
  for (const name of Object.keys(variants)) show(`${name}: per batch`, perBatch[name]!, "µs/batch")
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
