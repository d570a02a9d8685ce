/** Shared pieces of the benchmarks: argument parsing, timing, and the report with median and min–max. */
import { readFileSync, rmSync, writeFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import type { BuildOptions } from "esbuild"

/**
 * Compiles `input` (an entry point, or esbuild's `stdin`) with esbuild into one file beside the
 * clone's node_modules (so the packages it imports resolve; they stay external, so it shares this
 * process' `effect`), removed when the process exits; returns its path. The library is then measured
 * as users run it, not through tsx, whose `keepNames` slows its closures ~20 % (see
 * bin/effect-batchflow.js) but not the raw drivers'.
 */
export const compile = async (
  name: string,
  input: Pick<BuildOptions, "entryPoints" | "stdin">
): Promise<string> => {
  const { build } = await import("esbuild")
  const outfile = fileURLToPath(new URL(`../node_modules/.cache/${name}-${process.pid}.mjs`, import.meta.url))
  await build({
    ...input,
    outfile,
    bundle: true,
    packages: "external",
    platform: "node",
    format: "esm",
    target: "node20",
    logLevel: "error"
  })
  process.on("exit", () => rmSync(outfile, { force: true }))
  return outfile
}

export interface BenchRow {
  readonly id: number
  readonly user_id: number
  readonly name: string
  readonly amount: number
  readonly created_at: string
}

/**
 * PostgreSQL text array literals of W1 rows, one per column (`{1,2}`, `{"user-1","user-2"}`, strings
 * quoted, quotes and backslashes escaped), built row by row as a hand-written raw baseline would.
 */
export const unnestLiterals = (
  rows: ReadonlyArray<BenchRow>
): readonly [string, string, string, string, string] => {
  const q = (s: string) => (/["\\]/.test(s) ? `"${s.replace(/["\\]/g, "\\$&")}"` : `"${s}"`)
  let ids = "{"
  let users = "{"
  let names = "{"
  let amounts = "{"
  let created = "{"
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i]!
    const sep = i === 0 ? "" : ","
    ids += sep + r.id
    users += sep + r.user_id
    names += sep + q(r.name)
    amounts += sep + r.amount
    created += sep + q(r.created_at)
  }
  return [`${ids}}`, `${users}}`, `${names}}`, `${amounts}}`, `${created}}`]
}

export interface Sample {
  readonly variant: string
  readonly run: number
  readonly rows: number
  readonly millis: number
  readonly rowsPerSecond: number
  readonly peakRssMiB: number
  /** CPU time of this Node process per row, in µs (user + system). */
  readonly nodeCpuUs?: number
  /** CPU time of the whole machine per row, in µs (every core, every process: the database servers too). */
  readonly machineCpuUs?: number
}

/** Busy jiffies of all cores (from /proc/stat; 0 where there is none) and this process's CPU time. */
export interface CpuMark {
  readonly node: NodeJS.CpuUsage
  readonly busyJiffies: number
}

const busyJiffies = (): number => {
  try {
    const fields = readFileSync("/proc/stat", "utf8")
      .split("\n", 1)[0]!
      .trim()
      .split(/\s+/)
      .slice(1)
      .map(Number)
    // user nice system idle iowait irq softirq steal: busy = all but idle and iowait
    return fields.slice(0, 8).reduce((sum, n, i) => (i === 3 || i === 4 ? sum : sum + n), 0)
  } catch {
    return 0
  }
}

export const cpuMark = (): CpuMark => ({ node: process.cpuUsage(), busyJiffies: busyJiffies() })

/** CPU per row since `mark`, for a sample. Jiffies are 10 ms on Linux. */
export const cpuPerRow = (mark: CpuMark, rows: number): Pick<Sample, "nodeCpuUs" | "machineCpuUs"> => {
  const node = process.cpuUsage(mark.node)
  const machine = (busyJiffies() - mark.busyJiffies) * 10_000
  const nodeCpuUs = (node.user + node.system) / rows
  return machine > 0 ? { nodeCpuUs, machineCpuUs: machine / rows } : { nodeCpuUs }
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
  const mark = cpuMark()
  const start = performance.now()
  const rows = await body()
  const millis = performance.now() - start
  return {
    variant,
    run,
    rows,
    millis,
    rowsPerSecond: rows / (millis / 1000),
    peakRssMiB: process.resourceUsage().maxRSS / 1024,
    ...cpuPerRow(mark, rows)
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
  const withCpu = samples.some((s) => s.nodeCpuUs !== undefined)
  const cpuOf = (runs: ReadonlyArray<Sample>, pick: (s: Sample) => number | undefined) => {
    const values = runs.map(pick).filter((x): x is number => x !== undefined)
    return values.length === 0 ? "–" : median(values).toFixed(2)
  }
  console.log(
    `| variant | median rows/s | min | max | ratio to baseline (median, min–max) |${withCpu ? " Node CPU µs/row | machine CPU µs/row |" : ""}`
  )
  console.log(`|---|---:|---:|---:|---:|${withCpu ? "---:|---:|" : ""}`)
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
      `| ${v} | ${fmt(row.median)} | ${fmt(row.min)} | ${fmt(row.max)} | ${row.ratio.toFixed(2)} (${row.ratioMin.toFixed(2)}–${row.ratioMax.toFixed(2)}) |${
        withCpu ? ` ${cpuOf(runs, (s) => s.nodeCpuUs)} | ${cpuOf(runs, (s) => s.machineCpuUs)} |` : ""
      }`
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
