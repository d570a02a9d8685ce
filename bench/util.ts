/** Shared pieces of the benchmarks: argument parsing, timing, and the report with median and min–max. */
import { writeFileSync } from "node:fs"

export interface BenchRow {
  readonly id: number
  readonly user_id: number
  readonly name: string
  readonly amount: number
  readonly created_at: string
}

export interface Sample {
  readonly variant: string
  readonly run: number
  readonly rows: number
  readonly millis: number
  readonly rowsPerSecond: number
  readonly peakRssMiB: number
}

export const parseArgs = <T extends Record<string, number | string | undefined>>(
  argv: ReadonlyArray<string>,
  defaults: T
): T & { json?: string } => {
  const out: Record<string, number | string | undefined> = { ...defaults }
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!
    if (!flag.startsWith("--")) throw new Error(`unexpected argument ${flag}`)
    const name = flag.slice(2)
    const value = argv[++i]
    if (value === undefined) throw new Error(`${flag} needs a value`)
    if (!(name in defaults) && name !== "json") throw new Error(`unknown flag ${flag}`)
    out[name] = typeof defaults[name] === "number" ? Number(value) : value
  }
  return out as T & { json?: string }
}

export const time = async (variant: string, run: number, body: () => Promise<number>): Promise<Sample> => {
  globalThis.gc?.()
  const start = performance.now()
  const rows = await body()
  const millis = performance.now() - start
  return {
    variant,
    run,
    rows,
    millis,
    rowsPerSecond: rows / (millis / 1000),
    peakRssMiB: process.resourceUsage().maxRSS / 1024
  }
}

const median = (xs: ReadonlyArray<number>): number => {
  const s = [...xs].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

const fmt = (n: number): string =>
  n >= 1e6 ? `${(n / 1e6).toFixed(2)} M` : n >= 1e3 ? `${(n / 1e3).toFixed(0)} k` : n.toFixed(0)

/** Prints a table: median rows/s with min–max, and the ratio to the baseline paired by run. */
export const report = (
  title: string,
  samples: ReadonlyArray<Sample>,
  baseline: string,
  json?: string
): void => {
  const variants = [...new Set(samples.map((s) => s.variant))]
  const runsOf = (v: string) => samples.filter((s) => s.variant === v)
  console.log(`\n${title}: ${runsOf(variants[0]!).length} runs, ${samples[0]?.rows ?? 0} rows each\n`)
  console.log("| variant | median rows/s | min | max | ratio to baseline (median, min–max) |")
  console.log("|---|---:|---:|---:|---:|")
  const summary = variants.map((v) => {
    const runs = runsOf(v)
    const rates = runs.map((s) => s.rowsPerSecond)
    const ratios = runs.map((s) => {
      const base = samples.find((b) => b.variant === baseline && b.run === s.run)
      return base === undefined ? Number.NaN : s.rowsPerSecond / base.rowsPerSecond
    })
    const row = {
      variant: v,
      median: median(rates),
      min: Math.min(...rates),
      max: Math.max(...rates),
      ratio: median(ratios),
      ratioMin: Math.min(...ratios),
      ratioMax: Math.max(...ratios)
    }
    console.log(
      `| ${v} | ${fmt(row.median)} | ${fmt(row.min)} | ${fmt(row.max)} | ${row.ratio.toFixed(2)} (${row.ratioMin.toFixed(2)}–${row.ratioMax.toFixed(2)}) |`
    )
    return row
  })
  console.log(`\npeak RSS: ${Math.max(...samples.map((s) => s.peakRssMiB)).toFixed(0)} MiB`)
  if (json !== undefined) writeFileSync(json, JSON.stringify({ title, samples, summary }, null, 2))
}

/** The flow configuration of W1 (../shared/design/BENCH.md), for every backend. */
export const w1Config = {
  bufferSize: 10_000,
  flushSize: 500,
  flushInterval: "50 millis",
  concurrency: 4,
  retry: { maxAttempts: 3, backoffBase: "20 millis", maxBackoff: "500 millis" },
  timeout: "5 seconds"
} as const
