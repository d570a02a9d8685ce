/**
 * W0: the engine alone (see ../shared/design/BENCH.md). No database: an executor that counts rows.
 * 4 producer fibers submit N rows (per-row `submit`, and `submitAll` of 500-row arrays); buffer
 * 10,000, flushSize 500, flushInterval 50 ms, concurrency 4, retry on. The floor in the same run is a
 * plain-JS bounded batcher doing the same grouping; a second floor feeds that batcher from 4 Effect
 * fibers with one `yield*` per row, which is as cheap as a per-row Effect call can be. Variants are
 * interleaved in each run.
 *
 *   npx tsx bench/w0.ts [--rows 1000000] [--runs 3] [--json out.json]
 */
import { Effect } from "effect"
import { BatchExecutor, BatchFlow } from "effect-batchflow"
import { type BenchRow, parseArgs, report, type Sample, time } from "./util.js"
import { config, makeRow, PRODUCERS, produce } from "./w0-workload.js"

const runFlow = (rows: number, mode: "submit" | "submitAll"): Promise<number> => {
  const memory = BatchExecutor.memory({ keepRows: false })
  const program = produce(rows, mode).pipe(
    Effect.provide(BatchFlow.layer({ ...config, executors: [BatchExecutor.forAll(memory)] }))
  )
  return Effect.runPromise(program).then((submitted) => {
    if (memory.rowCount() !== submitted) {
      throw new Error(`integrity: ${memory.rowCount()} rows written, expected ${submitted}`)
    }
    return memory.rowCount()
  })
}

/**
 * A plain-JS bounded batcher: `add` accepts a row at once while there is room (otherwise it returns a
 * promise to await), a consumer takes ≤ 500 rows per batch, on size or after 50 ms.
 */
const plainBatcher = (producers: number) => {
  const capacity = 10_000
  const flushSize = 500
  let buffer: Array<BenchRow> = []
  let waiters: Array<() => void> = []
  let wakeConsumer: (() => void) | undefined
  let written = 0
  let producing = producers
  const add = (row: BenchRow): Promise<void> | undefined => {
    if (buffer.length >= capacity) {
      return new Promise<void>((resolve) => waiters.push(resolve)).then(() => add(row))
    }
    buffer.push(row)
    if (buffer.length >= flushSize && wakeConsumer) {
      const wake = wakeConsumer
      wakeConsumer = undefined
      wake()
    }
    return undefined
  }
  const consumer = (async () => {
    while (true) {
      if (buffer.length < flushSize && producing > 0) {
        await new Promise<void>((resolve) => {
          wakeConsumer = resolve
          setTimeout(resolve, 50)
        })
        wakeConsumer = undefined
      }
      if (buffer.length === 0) {
        if (producing === 0) break
        continue
      }
      const batch = buffer.length <= flushSize ? buffer : buffer.slice(0, flushSize)
      buffer = buffer.length <= flushSize ? [] : buffer.slice(flushSize)
      await Promise.resolve()
      written += batch.length
      const ws = waiters
      waiters = []
      for (const w of ws) w()
    }
    return written
  })()
  const producerDone = () => {
    producing--
  }
  return { add, producerDone, written: consumer }
}

/** The floor: plain async producers feeding the plain batcher. */
const runPlain = async (rows: number): Promise<number> => {
  const batcher = plainBatcher(PRODUCERS)
  const per = Math.floor(rows / PRODUCERS)
  await Promise.all(
    Array.from({ length: PRODUCERS }, async (_, p) => {
      for (let i = p * per; i < (p + 1) * per; i++) {
        const pending = batcher.add(makeRow(i + 1))
        if (pending !== undefined) await pending
      }
      batcher.producerDone()
    })
  )
  const written = await batcher.written
  if (written !== per * PRODUCERS) throw new Error(`floor integrity: ${written}`)
  return written
}

/**
 * Effect's own per-row floor: 4 fibers, each row one `yield*` of an `Effect.sync` that hands it to
 * the same plain batcher. No engine can make per-row `submit` cheaper than this.
 */
const runEffectFloor = async (rows: number): Promise<number> => {
  const batcher = plainBatcher(PRODUCERS)
  const per = Math.floor(rows / PRODUCERS)
  const producer = (p: number) =>
    Effect.gen(function* () {
      for (let i = p * per; i < (p + 1) * per; i++) {
        const row = makeRow(i + 1)
        const pending = yield* Effect.sync(() => batcher.add(row))
        if (pending !== undefined) yield* Effect.promise(() => pending)
      }
      batcher.producerDone()
    })
  await Effect.runPromise(Effect.forEach([0, 1, 2, 3], producer, { concurrency: "unbounded", discard: true }))
  const written = await batcher.written
  if (written !== per * PRODUCERS) throw new Error(`effect floor integrity: ${written}`)
  return written
}

const main = async () => {
  const args = parseArgs(process.argv.slice(2), { rows: 1_000_000, runs: 3 })
  const variants: Record<string, (rows: number) => Promise<number>> = {
    "plain-js floor": runPlain,
    "Effect per-row floor (yield* Effect.sync)": runEffectFloor,
    "BatchFlow submit (per row)": (rows) => runFlow(rows, "submit"),
    "BatchFlow submitAll (500-row arrays)": (rows) => runFlow(rows, "submitAll")
  }
  // Warm-up: a small pass of each variant so the JIT has seen the code.
  for (const run of Object.values(variants)) await run(100_000)
  const samples: Array<Sample> = []
  for (let r = 0; r < args.runs; r++) {
    const order = Object.keys(variants)
    if (r % 2 === 1) order.reverse()
    for (const name of order) samples.push(await time(name, r, () => variants[name]!(args.rows)))
  }
  report("W0 (no database)", samples, "plain-js floor", args.json)
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
