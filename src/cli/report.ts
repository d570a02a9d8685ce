/**
 * The bench's figures, once: summarised from the runs into a `Report`, printed as text, and written
 * as JSON (`--report out.json`) or Markdown (`--report out.md`). Ratios are BatchFlow's rows/s over
 * the baseline's, paired by run (the two ran one after the other in the same process).
 *
 * @since 0.1.0
 */
import { writeFileSync } from "node:fs"
import * as os from "node:os"
import * as Duration from "effect/Duration"
import { formatCount, formatMillis, formatRatio, formatSi, median, quantile } from "./format.js"
import { describeSemiSpace, type SemiSpace, semiSpaceInEffect } from "./gc.js"
import type { RunResult } from "./runner.js"
import type { BenchSpec } from "./workload.js"

/**
 * One variant over its measured runs.
 *
 * @since 0.1.0
 * @category models
 */
export interface VariantSummary {
  readonly name: string
  readonly kind: "flow" | "baseline"
  readonly description: string
  readonly runs: number
  readonly medianRowsPerSecond: number
  readonly minRowsPerSecond: number
  readonly maxRowsPerSecond: number
  /** The highest RSS sampled during any of its runs (MiB). */
  readonly peakRssMiB: number
  /** Node CPU (user + system) per row over its runs, µs: median, min, max. */
  readonly medianCpuMicrosPerRow: number
  readonly minCpuMicrosPerRow: number
  readonly maxCpuMicrosPerRow: number
  /** Runs whose integrity check passed. */
  readonly integrityOk: number
}

/**
 * BatchFlow's rows/s over a baseline's, paired by run.
 *
 * @since 0.1.0
 * @category models
 */
export interface Ratio {
  readonly baseline: string
  readonly median: number
  readonly min: number
  readonly max: number
  readonly pairs: number
  /** BatchFlow's Node CPU per row over the baseline's, paired by run. */
  readonly cpu: { readonly median: number; readonly min: number; readonly max: number }
}

/**
 * Everything the bench reports; what `--report out.json` contains.
 *
 * @since 0.1.0
 * @category models
 */
export interface Report {
  readonly tool: "effect-batchflow bench"
  readonly version: string
  readonly startedAt: string
  readonly finishedAt: string
  readonly workload: "W1" | "W0"
  readonly backend: string
  readonly target: string
  readonly notes: ReadonlyArray<string>
  readonly settings: {
    readonly rows: number
    readonly producers: number
    readonly submit: "submit" | "submitAll"
    readonly flushSize: number
    readonly flushIntervalMillis: number
    readonly concurrency: number
    readonly bufferSize: number
    readonly conflict: string | null
    readonly retry: {
      readonly maxAttempts: number
      readonly backoffBaseMillis: number
      readonly maxBackoffMillis: number
    }
    readonly timeoutMillis: number
    readonly runs: number
    readonly warmupRows: number
    readonly sampleEvery: number
    readonly baseline: boolean
  }
  readonly machine: {
    readonly node: string
    readonly platform: string
    readonly arch: string
    readonly cpus: number
    readonly cpuModel: string
    readonly totalMemoryMiB: number
  }
  /** The V8 young-generation limit the runs had (`--max-semi-space-size`, or V8's default). */
  readonly gc: SemiSpace & { readonly description: string }
  readonly variants: ReadonlyArray<VariantSummary>
  readonly ratios: ReadonlyArray<Ratio>
  /** submit→commit latency of the sampled `write`s over the measured BatchFlow runs; `null` when none. */
  readonly latency: {
    readonly samples: number
    readonly p50Millis: number
    readonly p99Millis: number
    readonly maxMillis: number
  } | null
  /** Over the measured BatchFlow runs. */
  readonly retries: number
  readonly failedRows: number
  readonly droppedFailures: number
  readonly failureReasons: Readonly<Record<string, number>>
  readonly writeFailures: number
  /** The process's peak RSS (`maxRSS`) at the end (MiB). */
  readonly processPeakRssMiB: number
  /** Its RSS before the first run (MiB): the peak's growth over it is what the runs cost. */
  readonly idleRssMiB: number
  /**
   * The live JS heap (`heapUsed` after a full GC, MiB) before the first run and after the last:
   * what the runs leave reachable. Peak RSS also counts garbage V8 had not collected yet.
   */
  readonly liveHeap: { readonly beforeMiB: number; readonly afterMiB: number }
  readonly integrity: {
    readonly ok: boolean
    /** Runs checked, warm-up included. */
    readonly checkedRuns: number
    readonly failures: ReadonlyArray<{
      readonly variant: string
      readonly run: number
      readonly problems: ReadonlyArray<string>
    }>
  }
  /** Every run, warm-up (run 0) included, without the latency samples. */
  readonly runs: ReadonlyArray<Omit<RunResult, "latencies">>
  /** Integrity held in every run and no row failed. */
  readonly ok: boolean
}

/**
 * Summarises the runs.
 *
 * @since 0.1.0
 * @category constructors
 */
export const build = (input: {
  readonly spec: BenchSpec
  readonly version: string
  readonly startedAt: Date
  readonly target: string
  readonly notes: ReadonlyArray<string>
  readonly descriptions: Readonly<Record<string, string>>
  readonly results: ReadonlyArray<RunResult>
  /** The process's RSS before the first run (MiB). */
  readonly idleRssMiB: number
  /** The live JS heap before the first run and after the last (MiB). */
  readonly liveHeap: { readonly beforeMiB: number; readonly afterMiB: number }
  /** Default: this process's (`semiSpaceInEffect`). */
  readonly semiSpace?: SemiSpace | undefined
}): Report => {
  const { spec, results } = input
  const measured = results.filter((r) => r.run > 0)
  const names = [...new Set(measured.map((r) => r.variant))]
  const variants = names.map((name): VariantSummary => {
    const runs = measured.filter((r) => r.variant === name)
    const rates = runs.map((r) => r.rowsPerSecond)
    const cpu = runs.map((r) => r.cpuMicrosPerRow)
    return {
      name,
      kind: runs[0]!.kind,
      description: input.descriptions[name] ?? "",
      runs: runs.length,
      medianRowsPerSecond: median(rates),
      minRowsPerSecond: Math.min(...rates),
      maxRowsPerSecond: Math.max(...rates),
      peakRssMiB: Math.max(...runs.map((r) => r.peakRssMiB)),
      medianCpuMicrosPerRow: median(cpu),
      minCpuMicrosPerRow: Math.min(...cpu),
      maxCpuMicrosPerRow: Math.max(...cpu),
      integrityOk: runs.filter((r) => r.integrity.ok).length
    }
  })
  const flowRuns = measured.filter((r) => r.kind === "flow")
  const ratios = variants
    .filter((v) => v.kind === "baseline")
    .map((v): Ratio => {
      const paired = flowRuns.flatMap((f) => {
        const base = measured.find((b) => b.variant === v.name && b.run === f.run)
        return base === undefined ? [] : [{ flow: f, base }]
      })
      const pairs = paired.map(({ base, flow }) => flow.rowsPerSecond / base.rowsPerSecond)
      const cpu = paired.map(({ base, flow }) => flow.cpuMicrosPerRow / base.cpuMicrosPerRow)
      return {
        baseline: v.name,
        median: median(pairs),
        min: Math.min(...pairs),
        max: Math.max(...pairs),
        pairs: pairs.length,
        cpu: { median: median(cpu), min: Math.min(...cpu), max: Math.max(...cpu) }
      }
    })
  const latencies = flowRuns.flatMap((r) => r.latencies).sort((a, b) => a - b)
  const failureReasons: Record<string, number> = {}
  for (const run of flowRuns) {
    for (const [reason, n] of Object.entries(run.failureReasons))
      failureReasons[reason] = (failureReasons[reason] ?? 0) + n
  }
  const sum = (f: (r: RunResult) => number) => flowRuns.reduce((n, r) => n + f(r), 0)
  const integrityFailures = results
    .filter((r) => !r.integrity.ok)
    .map((r) => ({ variant: r.variant, run: r.run, problems: r.integrity.problems }))
  const failedRows = results.filter((r) => r.kind === "flow").reduce((n, r) => n + r.failedRows, 0)
  const cpus = os.cpus()
  const semiSpace = input.semiSpace ?? semiSpaceInEffect()
  return {
    tool: "effect-batchflow bench",
    version: input.version,
    startedAt: input.startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    workload: spec.backend === "noop" ? "W0" : "W1",
    backend: spec.backend,
    target: input.target,
    notes: input.notes,
    settings: {
      rows: spec.rows,
      producers: spec.producers,
      submit: spec.submitAll ? "submitAll" : "submit",
      flushSize: spec.flushSize,
      flushIntervalMillis: Duration.toMillis(spec.flushInterval),
      concurrency: spec.concurrency,
      bufferSize: spec.bufferSize,
      conflict: spec.backend === "redis" || spec.backend === "noop" ? null : spec.conflict,
      retry: { maxAttempts: 3, backoffBaseMillis: 20, maxBackoffMillis: 500 },
      timeoutMillis: 5000,
      runs: spec.runs,
      warmupRows: spec.warmup,
      sampleEvery: spec.sampleEvery,
      baseline: spec.baseline
    },
    machine: {
      node: process.version,
      platform: process.platform,
      arch: process.arch,
      cpus: cpus.length,
      cpuModel: cpus[0]?.model.trim() ?? "unknown",
      totalMemoryMiB: Math.round(os.totalmem() / (1024 * 1024))
    },
    gc: { ...semiSpace, description: describeSemiSpace(semiSpace) },
    variants,
    ratios,
    latency:
      latencies.length === 0
        ? null
        : {
            samples: latencies.length,
            p50Millis: quantile(latencies, 0.5),
            p99Millis: quantile(latencies, 0.99),
            maxMillis: latencies[latencies.length - 1]!
          },
    retries: sum((r) => r.retries),
    failedRows: sum((r) => r.failedRows),
    droppedFailures: sum((r) => r.droppedFailures),
    failureReasons,
    writeFailures: sum((r) => r.writeFailures),
    processPeakRssMiB: process.resourceUsage().maxRSS / 1024,
    idleRssMiB: input.idleRssMiB,
    liveHeap: input.liveHeap,
    integrity: {
      ok: integrityFailures.length === 0,
      checkedRuns: results.length,
      failures: integrityFailures
    },
    runs: results.map(({ latencies: _, ...rest }) => rest),
    ok: integrityFailures.length === 0 && failedRows === 0
  }
}

const settingsLine = (report: Report): string => {
  const s = report.settings
  const parts = [
    `${formatCount(s.rows)} rows`,
    `${s.producers} producers (${s.submit === "submit" ? "one submit per row" : `submitAll of ${s.flushSize}-row arrays`})`,
    `flushSize ${s.flushSize}`,
    `flushInterval ${s.flushIntervalMillis} ms`,
    `concurrency ${s.concurrency}`,
    `buffer ${formatCount(s.bufferSize)}`
  ]
  if (s.conflict !== null) parts.push(`conflict ${s.conflict}`)
  parts.push(
    `retry ${s.retry.maxAttempts} attempts`,
    `timeout ${s.timeoutMillis / 1000} s`,
    `${s.runs} run${s.runs === 1 ? "" : "s"}`
  )
  return parts.join(" · ")
}

/** µs with two decimals (three below 0.1). */
const formatMicros = (us: number): string => (Number.isFinite(us) ? us.toFixed(us < 0.1 ? 3 : 2) : "–")

/** `1.23 (1.20–1.31)`, or `1.23` for one run. */
const cpuRange = (v: VariantSummary): string =>
  v.runs > 1
    ? `${formatMicros(v.medianCpuMicrosPerRow)} (${formatMicros(v.minCpuMicrosPerRow)}–${formatMicros(v.maxCpuMicrosPerRow)})`
    : formatMicros(v.medianCpuMicrosPerRow)

const table = (report: Report): Array<string> => {
  const primary = report.ratios[0]?.baseline
  const flow = report.variants.find((v) => v.kind === "flow")
  const lines = [
    "| variant | median rows/s | min | max | × baseline | Node CPU µs/row (min–max) | peak RSS | integrity |",
    "|---|---:|---:|---:|---:|---:|---:|---|"
  ]
  for (const v of report.variants) {
    let ratio = "–"
    if (primary !== undefined && flow !== undefined) {
      if (v.kind === "flow") ratio = formatRatio(report.ratios[0]!.median)
      else if (v.name === primary) ratio = "1.00×"
      else
        ratio = formatRatio(
          v.medianRowsPerSecond /
            (report.variants.find((b) => b.name === primary)?.medianRowsPerSecond ?? Number.NaN)
        )
    }
    const label = v.name === primary ? `${v.name} (baseline)` : v.name
    lines.push(
      `| ${label} | ${formatSi(v.medianRowsPerSecond)} | ${formatSi(v.minRowsPerSecond)} | ${formatSi(v.maxRowsPerSecond)} | ${ratio} | ${cpuRange(v)} | ${v.peakRssMiB.toFixed(0)} MiB | ${v.integrityOk}/${v.runs} OK |`
    )
  }
  return lines
}

const findings = (report: Report): Array<string> => {
  const lines: Array<string> = []
  for (const r of report.ratios) {
    lines.push(
      `BatchFlow / ${r.baseline}: ${formatRatio(r.median)}${r.pairs > 1 ? ` (median of ${r.pairs} paired runs, ${formatRatio(r.min)}–${formatRatio(r.max)})` : ""}`
    )
  }
  const cpu = report.variants.map((v) => `${v.name} ${cpuRange(v)}`).join(" · ")
  const cpuRatios = report.ratios.map(
    (r) =>
      `BatchFlow uses ${formatRatio(r.cpu.median)}${r.pairs > 1 ? ` (${formatRatio(r.cpu.min)}–${formatRatio(r.cpu.max)})` : ""} the CPU per row of ${r.baseline}`
  )
  lines.push(
    `Node CPU µs/row (user + system over each run's clock): ${cpu}${cpuRatios.length > 0 ? `; ${cpuRatios.join("; ")}` : ""}`
  )
  if (report.latency !== null) {
    const l = report.latency
    lines.push(
      `submit→commit latency (write, 1 row in ${report.settings.sampleEvery}, ${formatCount(l.samples)} samples): p50 ${formatMillis(l.p50Millis)} · p99 ${formatMillis(l.p99Millis)} · max ${formatMillis(l.maxMillis)}`
    )
  }
  const reasons = Object.entries(report.failureReasons)
    .map(([reason, n]) => `${reason} ${formatCount(n)}`)
    .join(", ")
  lines.push(
    `retries ${formatCount(report.retries)} · failed rows ${formatCount(report.failedRows)}${reasons === "" ? "" : ` (${reasons})`} · dropped failures ${formatCount(report.droppedFailures)}${report.writeFailures > 0 ? ` · failed sampled writes ${report.writeFailures}` : ""}`
  )
  lines.push(
    `peak RSS: ${report.processPeakRssMiB.toFixed(0)} MiB (process), +${(report.processPeakRssMiB - report.idleRssMiB).toFixed(0)} MiB over its ${report.idleRssMiB.toFixed(0)} MiB before the first run`
  )
  const live = report.liveHeap
  const grew = live.afterMiB - live.beforeMiB
  lines.push(
    `live JS heap (after a full GC): ${live.beforeMiB.toFixed(1)} MiB before the first run, ${live.afterMiB.toFixed(1)} MiB after the last (${grew >= 0 ? "+" : "−"}${Math.abs(grew).toFixed(1)} MiB): what the runs keep; the rest of the peak is garbage not yet collected and V8's young generation`
  )
  lines.push(`V8 max semi-space (young generation): ${report.gc.description}`)
  if (report.integrity.ok) {
    lines.push(
      `integrity: OK in all ${report.integrity.checkedRuns} runs (warm-up included): every row present, content checked`
    )
  } else {
    lines.push(
      `integrity: FAILED in ${report.integrity.failures.length} of ${report.integrity.checkedRuns} runs`
    )
    for (const f of report.integrity.failures) {
      lines.push(`  ${f.variant}, ${f.run === 0 ? "warm-up" : `run ${f.run}`}: ${f.problems.join("; ")}`)
    }
  }
  return lines
}

/**
 * The summary printed at the end of the command.
 *
 * @since 0.1.0
 * @category rendering
 */
export const renderText = (report: Report): string =>
  [
    "",
    `${report.workload} on ${report.target}`,
    settingsLine(report),
    "",
    ...table(report),
    "",
    ...findings(report),
    ""
  ].join("\n")

/**
 * The report as Markdown.
 *
 * @since 0.1.0
 * @category rendering
 */
export const renderMarkdown = (report: Report): string => {
  const m = report.machine
  const lines = [
    `# effect-batchflow bench: ${report.workload}, ${report.backend}`,
    "",
    `- Target: ${report.target}`,
    `- Settings: ${settingsLine(report)}`,
    `- Machine: ${m.cpus} × ${m.cpuModel}, ${formatCount(m.totalMemoryMiB)} MiB, Node ${m.node} (${m.platform}/${m.arch})`,
    `- Run: ${report.startedAt} → ${report.finishedAt}, effect-batchflow ${report.version}`,
    ...report.notes.map((n) => `- ${n}`),
    "",
    "## Throughput",
    "",
    ...table(report),
    ""
  ]
  const descriptions = report.variants.filter((v) => v.description !== "")
  if (descriptions.length > 0) {
    lines.push(...descriptions.map((v) => `- **${v.name}**: ${v.description}`), "")
  }
  lines.push(
    "## Findings",
    "",
    ...findings(report).map((l) => (l.startsWith("  ") ? `  - ${l.trim()}` : `- ${l}`)),
    ""
  )
  lines.push(
    "## Runs",
    "",
    "| variant | run | rows | seconds | rows/s | Node CPU µs/row | peak RSS | retries | failed | integrity |"
  )
  lines.push("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
  for (const r of report.runs) {
    lines.push(
      `| ${r.variant} | ${r.run === 0 ? "warm-up" : r.run} | ${formatCount(r.rows)} | ${(r.millis / 1000).toFixed(2)} | ${formatSi(r.rowsPerSecond)} | ${formatMicros(r.cpuMicrosPerRow)} | ${r.peakRssMiB.toFixed(0)} MiB | ${r.retries} | ${r.failedRows} | ${r.integrity.ok ? "OK" : r.integrity.problems.join("; ")} |`
    )
  }
  lines.push("", `Result: ${report.ok ? "OK" : "FAILED"}`, "")
  return lines.join("\n")
}

/**
 * Writes the report to each path, as JSON or Markdown by extension.
 *
 * @since 0.1.0
 * @category rendering
 */
export const write = (report: Report, paths: ReadonlyArray<string>): void => {
  for (const path of paths) {
    const text = path.toLowerCase().endsWith(".json")
      ? `${JSON.stringify(report, null, 2)}\n`
      : renderMarkdown(report)
    writeFileSync(path, text)
  }
}
