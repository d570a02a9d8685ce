/**
 * W0 through the Promise facade against the Effect API: Node CPU µs per row (user + system,
 * `process.cpuUsage`, from the first submit to the end of close) of 4 producers submitting one row
 * at a time, each awaiting every submit:
 *
 * - `effect submit`: 4 fibers, `yield* flow.submit(row)` (bench/w0-workload.ts, as bench/engine-cost.ts);
 * - `promise submit`: 4 async functions, `await flow.submit(row)` on the facade.
 *
 * Both flows have the same configuration and the same executor (one that only counts rows), so the
 * difference is the facade's. Rounds are interleaved (the order alternates); the report gives the
 * median (min–max) of each and of the ratio promise / effect paired by round.
 *
 *   npx tsx bench/promise-w0.ts [--rows 400000] [--runs 6]
 *
 * tsx compiles with esbuild's `keepNames`, which slows the engine (see bin/effect-batchflow.js); for
 * the figures users get, run it compiled as the bench command does:
 *
 *   npx esbuild bench/promise-w0.ts --bundle --platform=node --format=esm --packages=external \
 *     --outfile=node_modules/.cache/promise-w0.mjs && node node_modules/.cache/promise-w0.mjs --runs 11
 *
 * Measured that way (effect 3.22.4, Node 20, a shared 2-core machine, 11 rounds, 2026-12-06):
 * Effect submit 0.406 µs/row (0.298–0.879), Promise submit 0.488 (0.287–0.588), ratio 1.13×
 * (0.67–1.36). A first facade measured 2.07× (1.85–2.33): every idle worker woken by a batch's first
 * row armed its own interval timer; one worker keeps the interval since (engine.ts `nextStep`), which
 * also made the event-loop scheduler the facade then used unnecessary (with it: 1.27–1.35×).
 */
import { Effect } from "effect"
import { BatchExecutor, BatchFlow } from "effect-batchflow"
import { make as makeFacade } from "../src/internal/promise/flow.js"
import { parseArgs } from "./util.js"
import { config, Events, makeRow, PRODUCERS, produce } from "./w0-workload.js"

const flowLayer = (memory: BatchExecutor.Memory) =>
  BatchFlow.layer({ ...config, executors: [BatchExecutor.forAll(memory)] })

const effectRun = async (rows: number): Promise<number> => {
  const memory = BatchExecutor.memory({ keepRows: false })
  const start = process.cpuUsage()
  const submitted = await Effect.runPromise(produce(rows, "submit").pipe(Effect.provide(flowLayer(memory))))
  const used = process.cpuUsage(start)
  if (memory.rowCount() !== submitted) throw new Error(`integrity: ${memory.rowCount()} of ${submitted}`)
  return (used.user + used.system) / submitted
}

const promiseRun = async (rows: number): Promise<number> => {
  const memory = BatchExecutor.memory({ keepRows: false })
  const per = Math.floor(rows / PRODUCERS)
  const start = process.cpuUsage()
  const flow = await makeFacade(flowLayer(memory))
  const producer = async (p: number) => {
    const first = p * per
    for (let i = first; i < first + per; i++) await flow.submit(Events, makeRow(i + 1))
  }
  await Promise.all(Array.from({ length: PRODUCERS }, (_, p) => producer(p)))
  await flow.close()
  const used = process.cpuUsage(start)
  const submitted = per * PRODUCERS
  if (memory.rowCount() !== submitted) throw new Error(`integrity: ${memory.rowCount()} of ${submitted}`)
  return (used.user + used.system) / submitted
}

const median = (xs: ReadonlyArray<number>): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 === 1 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
}

const show = (name: string, xs: ReadonlyArray<number>, unit: string, digits: number): void => {
  const fmt = (x: number) => x.toFixed(digits)
  console.log(
    `${name.padEnd(20)} ${fmt(median(xs))} ${unit} (${fmt(Math.min(...xs))}–${fmt(Math.max(...xs))}, ${xs.length} runs)`
  )
}

const main = async () => {
  const args = parseArgs(process.argv.slice(2), { rows: 400_000, runs: 6 })
  const variants = { "effect submit": effectRun, "promise submit": promiseRun }
  for (const run of Object.values(variants)) await run(args.rows) // warm-up
  const results: Record<keyof typeof variants, Array<number>> = { "effect submit": [], "promise submit": [] }
  for (let r = 0; r < args.runs; r++) {
    const names = Object.keys(variants) as Array<keyof typeof variants>
    if (r % 2 === 1) names.reverse()
    for (const name of names) results[name].push(await variants[name](args.rows))
  }
  console.log(
    `W0, ${args.rows} rows, ${PRODUCERS} producers, flushSize ${config.flushSize}, Node CPU per row:`
  )
  for (const name of Object.keys(variants) as Array<keyof typeof variants>) {
    show(name, results[name], "µs/row", 3)
  }
  show(
    "promise / effect",
    results["promise submit"].map((p, i) => p / results["effect submit"][i]!),
    "×",
    2
  )
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
