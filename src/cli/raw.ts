/**
 * The plain-JS side of the baselines: the batch loop every raw-driver baseline shares (the same rows
 * in batches of `flushSize`, `concurrency` batches in flight), and W0's floor, a plain-JS bounded
 * batcher doing the engine's grouping with no database.
 *
 * @since 0.1.0
 */
import * as Turns from "./turns.js"
import { type BenchRow, makeRow, shareOf } from "./workload.js"

/**
 * Rows written so far by a baseline, read by the progress line; and the stop flag, set when the run
 * is interrupted (Ctrl-C), after which the batch loop starts no new batch.
 *
 * @since 0.1.0
 * @category models
 */
export interface Counter {
  committed: number
  stopped?: boolean
}

/**
 * A baseline: the raw driver (or plain JS) doing the run's work.
 *
 * @since 0.1.0
 * @category models
 */
export interface Baseline {
  /** A short, stable label (used in reports and to pair runs). */
  readonly name: string
  /** What it does, in one line. */
  readonly description: string
  /** Writes rows 1..`rows`, counting committed rows in `counter`. */
  readonly run: (rows: number, counter: Counter) => Promise<void>
}

/**
 * Writes ids 1..`rows` in batches of `batchSize` (built on the fly, like a producer would), with
 * `inFlight` batches at once. `write` gets the batch's first and last id (inclusive).
 *
 * @since 0.1.0
 * @category runners
 */
export const inBatches = async (
  rows: number,
  batchSize: number,
  inFlight: number,
  counter: Counter,
  write: (first: number, last: number) => Promise<void>
): Promise<void> => {
  let next = 1
  const turns = Turns.start()
  const worker = async () => {
    while (next <= rows && counter.stopped !== true) {
      const first = next
      const last = Math.min(first + batchSize - 1, rows)
      next = last + 1
      await write(first, last)
      counter.committed += last - first + 1
      if (turns.starved()) await turns.turn()
    }
  }
  try {
    await Promise.all(Array.from({ length: Math.max(1, inFlight) }, worker))
  } finally {
    turns.stop()
  }
}

/**
 * The rows `first..last` as objects.
 *
 * @since 0.1.0
 * @category runners
 */
export const rowsOf = (first: number, last: number): Array<BenchRow> => {
  const out: Array<BenchRow> = []
  for (let id = first; id <= last; id++) out.push(makeRow(id))
  return out
}

/**
 * W0's sink: counts rows and sums their ids; every 101st row is checked field by field.
 *
 * @since 0.1.0
 * @category models
 */
export interface CountingSink {
  count: number
  idSum: number
  wrong: number
  readonly accept: (rows: ReadonlyArray<BenchRow>) => void
  readonly reset: () => void
}

/**
 * @since 0.1.0
 * @category constructors
 */
export const countingSink = (): CountingSink => {
  const sink: CountingSink = {
    count: 0,
    idSum: 0,
    wrong: 0,
    accept: (rows) => {
      let idSum = 0
      for (let i = 0; i < rows.length; i++) {
        const row = rows[i]!
        idSum += row.id
        if (row.id % 101 === 0 && !isExpected(row)) sink.wrong++
      }
      sink.count += rows.length
      sink.idSum += idSum
    },
    reset: () => {
      sink.count = 0
      sink.idSum = 0
      sink.wrong = 0
    }
  }
  return sink
}

/**
 * Whether a row has the content `makeRow` gives its id.
 *
 * @since 0.1.0
 * @category utils
 */
export const isExpected = (row: BenchRow): boolean => {
  const expected = makeRow(row.id)
  return (
    row.user_id === expected.user_id &&
    row.name === expected.name &&
    row.amount === expected.amount &&
    row.created_at === expected.created_at
  )
}

/**
 * W0's floor: `producers` async producers add rows one at a time to a plain-JS bounded buffer
 * (awaiting only when it is full); one flusher takes batches of ≤ `flushSize` when a batch is full
 * or `flushIntervalMillis` has passed, and hands them to the sink.
 *
 * @since 0.1.0
 * @category runners
 */
export const plainBatcher = async (
  rows: number,
  options: {
    readonly producers: number
    readonly bufferSize: number
    readonly flushSize: number
    readonly flushIntervalMillis: number
  },
  sink: CountingSink,
  counter: Counter
): Promise<void> => {
  let buffer: Array<BenchRow> = []
  let waiting: Array<() => void> = []
  let wake: (() => void) | undefined
  let producing = options.producers
  const add = (row: BenchRow): Promise<void> | undefined => {
    if (buffer.length >= options.bufferSize) {
      return new Promise<void>((resolve) => waiting.push(resolve)).then(() => add(row))
    }
    buffer.push(row)
    if (buffer.length >= options.flushSize && wake !== undefined) {
      const w = wake
      wake = undefined
      w()
    }
    return undefined
  }
  const flusher = (async () => {
    while (true) {
      if (buffer.length < options.flushSize && producing > 0) {
        let timer: ReturnType<typeof setTimeout> | undefined
        await new Promise<void>((resolve) => {
          wake = resolve
          timer = setTimeout(resolve, options.flushIntervalMillis)
        })
        clearTimeout(timer)
        wake = undefined
      }
      if (buffer.length === 0) {
        if (producing === 0) return
        continue
      }
      let batch: Array<BenchRow>
      if (buffer.length <= options.flushSize) {
        batch = buffer
        buffer = []
      } else {
        batch = buffer.slice(0, options.flushSize)
        buffer = buffer.slice(options.flushSize)
      }
      await Promise.resolve()
      sink.accept(batch)
      counter.committed += batch.length
      const released = waiting
      waiting = []
      for (const resolve of released) resolve()
    }
  })()
  await Promise.all(
    Array.from({ length: options.producers }, async (_, p) => {
      const [first, last] = shareOf(rows, options.producers, p)
      for (let id = first; id <= last; id++) {
        const pending = add(makeRow(id))
        if (pending !== undefined) await pending
      }
      producing--
      if (producing === 0 && wake !== undefined) {
        const w = wake
        wake = undefined
        w()
      }
    })
  )
  await flusher
}
