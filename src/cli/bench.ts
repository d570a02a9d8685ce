/**
 * The `bench` command's body: loads the chosen backend, runs the warm-up and the measured runs
 * (BatchFlow and, with `--baseline`, the raw driver, interleaved), prints the summary, writes the
 * reports, and answers the exit code: 0 when every run's integrity check passed and no row failed,
 * 1 otherwise.
 *
 * @since 0.1.0
 */

import { writeFileSync } from "node:fs"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import type * as Scope from "effect/Scope"
import { formatCount, formatRate, formatSi } from "./format.js"
import * as Gc from "./gc.js"
import { BackendError, type Harness, type MakeHarness, messageOf, type Tamper } from "./harness.js"
import * as Metrics from "./metrics.js"
import type { ProgressOptions } from "./progress.js"
import * as Report from "./report.js"
import { type RunContext, type RunError, type RunResult, runBaseline, runFlow } from "./runner.js"
import type { BackendName, BenchSpec } from "./workload.js"

/**
 * Where the command writes.
 *
 * @since 0.1.0
 * @category models
 */
export interface Io {
  /** Results: one line at a time. */
  readonly out: (line: string) => void
  /** Errors and warnings. */
  readonly err: (line: string) => void
  readonly progress: ProgressOptions
  readonly version: string
  /**
   * Whether `out` and `err` may carry ANSI colours (the help, @effect/cli's messages). Default:
   * neither; `processIo` colours a stream only when it is a terminal (see `main.colorEnabled`).
   */
  readonly color?: { readonly out: boolean; readonly err: boolean } | undefined
}

/**
 * The test hook: `BATCHFLOW_BENCH_TAMPER=delete:N` deletes N rows (`corrupt:N` changes N rows)
 * after each measured BatchFlow run and before its integrity check.
 *
 * @since 0.1.0
 * @category constants
 */
export const TAMPER_VARIABLE = "BATCHFLOW_BENCH_TAMPER"

/**
 * Parses the test hook's value.
 *
 * @since 0.1.0
 * @category utils
 */
export const parseTamper = (value: string | undefined): Tamper | undefined | "invalid" => {
  if (value === undefined || value === "") return undefined
  const match = /^(delete|corrupt):(\d+)$/.exec(value)
  if (match === null || Number(match[2]) < 1) return "invalid"
  return { kind: match[1] as Tamper["kind"], rows: Number(match[2]) }
}

const loaders: Record<BackendName, () => Promise<{ readonly make: MakeHarness }>> = {
  sqlite: () => import("./sqliteBackend.js"),
  pg: () => import("./pgBackend.js"),
  mysql: () => import("./mysqlBackend.js"),
  redis: () => import("./redisBackend.js"),
  noop: () => import("./noopBackend.js")
}

const drivers: Record<BackendName, string> = {
  sqlite: "@effect/sql @effect/sql-sqlite-node better-sqlite3",
  pg: "@effect/sql @effect/sql-pg pg",
  mysql: "@effect/sql @effect/sql-mysql2 mysql2",
  redis: "ioredis",
  noop: ""
}

const loadHarness = (spec: BenchSpec): Effect.Effect<Harness, BackendError, Scope.Scope> =>
  Effect.tryPromise({
    try: () => loaders[spec.backend](),
    catch: (cause) =>
      new BackendError({
        message: `cannot load the ${spec.backend} backend (${messageOf(cause)}); it needs: npm install ${drivers[spec.backend]}`,
        cause
      })
  }).pipe(Effect.flatMap((module) => module.make(spec)))

const runLine = (label: string, r: RunResult): string => {
  const parts = [
    `${label.padEnd(12)} ${r.variant.padEnd(22)} ${formatCount(r.rows)} rows in ${(r.millis / 1000).toFixed(2)} s = ${formatRate(r.rowsPerSecond)}`,
    `${r.cpuMicrosPerRow.toFixed(2)} µs/row CPU`,
    `peak RSS ${r.peakRssMiB.toFixed(0)} MiB`
  ]
  if (r.kind === "flow") parts.push(`retries ${r.retries}`, `failed ${r.failedRows}`)
  parts.push(r.integrity.ok ? "integrity OK" : `integrity FAILED: ${r.integrity.problems.join("; ")}`)
  return parts.join(" · ")
}

const describeError = (error: BackendError | RunError): string =>
  error._tag === "BackendError" ? error.message : `the ${error.variant} run failed: ${messageOf(error.cause)}`

/**
 * One child of `--semi-space`: its semi-space, exit code, and report (`undefined` when it wrote none).
 *
 * @since 0.1.0
 * @category models
 */
export interface SemiSpaceRun {
  readonly maxSemiSpaceMiB: number | null
  readonly code: number
  readonly report: Report.Report | undefined
}

const range = (median: number, min: number, max: number, runs: number, digits: number, si = false) => {
  const f = (x: number) => (si ? formatSi(x) : x.toFixed(digits))
  return runs > 1 ? `${f(median)} (${f(min)}–${f(max)})` : f(median)
}

/**
 * The `--semi-space` comparison: one row per child and variant.
 *
 * @since 0.1.0
 * @category rendering
 */
export const semiSpaceTable = (runs: ReadonlyArray<SemiSpaceRun>): Array<string> => {
  const lines = [
    "| --max-semi-space-size | variant | rows/s median (min–max) | Node CPU µs/row median (min–max) | process peak RSS | growth over idle |",
    "|---|---|---:|---:|---:|---:|"
  ]
  for (const r of runs) {
    const label = r.maxSemiSpaceMiB === null ? "default (16 MiB)" : `${r.maxSemiSpaceMiB} MiB`
    if (r.report === undefined) {
      lines.push(`| ${label} | (no report: exit code ${r.code}) | – | – | – | – |`)
      continue
    }
    const rep = r.report
    for (const v of rep.variants) {
      lines.push(
        `| ${label} | ${v.name} | ${range(v.medianRowsPerSecond, v.minRowsPerSecond, v.maxRowsPerSecond, v.runs, 0, true)} | ${range(v.medianCpuMicrosPerRow, v.minCpuMicrosPerRow, v.maxCpuMicrosPerRow, v.runs, 2)} | ${rep.processPeakRssMiB.toFixed(0)} MiB | +${(rep.processPeakRssMiB - rep.idleRssMiB).toFixed(0)} MiB |`
      )
    }
  }
  return lines
}

/** `--semi-space`: the measurement once per value, each in its own child process. */
const compareSemiSpaces = (spec: BenchSpec, io: Io): Effect.Effect<number> =>
  Effect.gen(function* () {
    const runs: Array<SemiSpaceRun> = []
    for (const mib of spec.semiSpace) {
      io.out(
        `effect-batchflow bench --semi-space: a child node process${mib === null ? " with V8's default semi-space" : ` with --max-semi-space-size=${mib}`}`
      )
      const child = yield* Effect.promise(() =>
        Gc.runChild(
          spec,
          mib,
          // The child's own report is read here, not meant for the reader.
          (line) => {
            if (!line.startsWith("report written to ")) io.out(line)
          },
          io.err
        )
      )
      let report: Report.Report | undefined
      try {
        report = child.report === undefined ? undefined : (JSON.parse(child.report) as Report.Report)
      } catch {
        report = undefined
      }
      runs.push({ maxSemiSpaceMiB: mib, code: child.code, report })
      if (child.code === 130) break
    }
    const table = semiSpaceTable(runs)
    io.out(
      [
        "",
        `--max-semi-space-size compared (${spec.backend === "noop" ? "W0" : `W1 ${spec.backend}`}, ${formatCount(spec.rows)} rows, ${spec.runs} run${spec.runs === 1 ? "" : "s"} each, one node process per size)`,
        "",
        ...table,
        ""
      ].join("\n")
    )
    for (const path of spec.reports) {
      const text = path.toLowerCase().endsWith(".json")
        ? `${JSON.stringify({ tool: "effect-batchflow bench --semi-space", semiSpace: runs }, null, 2)}\n`
        : [
            `# effect-batchflow bench --semi-space: ${spec.backend}`,
            "",
            ...table,
            "",
            ...runs.flatMap((r) =>
              r.report === undefined
                ? []
                : [
                    `## --max-semi-space-size ${r.maxSemiSpaceMiB ?? "default"}`,
                    "",
                    Report.renderMarkdown(r.report).replace(/^(#+) /gm, "$1## ")
                  ]
            )
          ].join("\n")
      yield* Effect.try(() => writeFileSync(path, text)).pipe(
        Effect.catchAll((cause) => Effect.sync(() => io.err(`cannot write the report: ${messageOf(cause)}`)))
      )
    }
    if (spec.reports.length > 0) io.out(`report written to ${spec.reports.join(", ")}`)
    const interrupted = runs.some((r) => r.code === 130)
    if (interrupted) return 130
    const failed =
      runs.length < spec.semiSpace.length || runs.some((r) => r.code !== 0 || r.report === undefined)
    if (failed) io.err("effect-batchflow bench: FAILED (a child run failed, see above)")
    return failed ? 1 : 0
  })

/**
 * Runs the bench and answers the exit code.
 *
 * @since 0.1.0
 * @category commands
 */
export const run = (spec: BenchSpec, io: Io, tamper: Tamper | undefined): Effect.Effect<number> =>
  spec.semiSpace.length > 0 && process.env[Gc.CHILD_VARIABLE] === undefined
    ? compareSemiSpaces(spec, io)
    : runHere(spec, io, tamper)

const runHere = (spec: BenchSpec, io: Io, tamper: Tamper | undefined): Effect.Effect<number> =>
  Effect.scoped(
    Effect.gen(function* () {
      const startedAt = new Date()
      const harness = yield* loadHarness(spec)
      // The process before any run (modules loaded, backend connected): peak RSS is reported over it.
      // A full GC first: the live heap before the runs, and the idle RSS without old garbage.
      const liveHeapBeforeMiB = Gc.liveHeapMiB()
      const idleRssMiB = process.memoryUsage.rss() / 1024 / 1024
      // The table / keys are removed however the bench ends: after the runs, or when it is
      // interrupted (Ctrl-C, SIGTERM) or a run fails; `--keep` keeps them. The finalizer runs before
      // the backend's connections are closed (they were opened in the same scope, earlier).
      let cleaned = spec.keep
      const cleanup = Effect.suspend(() => {
        if (cleaned) return Effect.void
        cleaned = true
        return harness.cleanup.pipe(
          Effect.timeout("30 seconds"),
          Effect.catchAll((cause) =>
            Effect.sync(() => io.err(`warning: cleanup failed: ${messageOf(cause)}`))
          )
        )
      })
      yield* Effect.addFinalizer((exit) =>
        Exit.isInterrupted(exit)
          ? Effect.sync(() =>
              io.err(`effect-batchflow bench: interrupted${spec.keep ? ` (--keep: ${spec.table} kept)` : ""}`)
            ).pipe(Effect.zipRight(cleanup))
          : cleanup
      )
      if (spec.metricsPort !== undefined) {
        const address = yield* Metrics.serve(spec.metricsPort)
        io.err(`Prometheus metrics at ${address} while the bench runs`)
      }
      io.out(`effect-batchflow bench: ${spec.backend === "noop" ? "W0" : "W1"} on ${harness.description}`)
      if (tamper !== undefined) {
        io.err(
          `warning: ${TAMPER_VARIABLE} is set: ${tamper.kind === "delete" ? "deleting" : "corrupting"} ${tamper.rows} rows after each BatchFlow run (test hook)`
        )
      }
      const ctx: RunContext = { spec, harness, progress: io.progress, tamper }
      const baselines = spec.baseline ? harness.baselines : []
      const results: Array<RunResult> = []
      const record = (label: string) => (r: RunResult) =>
        Effect.sync(() => {
          results.push(r)
          io.out(runLine(label, r))
        })
      if (spec.warmup > 0) {
        yield* runFlow(ctx, 0, spec.warmup, "warm-up BatchFlow").pipe(Effect.flatMap(record("warm-up")))
        for (const b of baselines) {
          yield* runBaseline(ctx, b, 0, spec.warmup, `warm-up ${b.name}`).pipe(
            Effect.flatMap(record("warm-up"))
          )
        }
      }
      for (let r = 1; r <= spec.runs; r++) {
        const label = `run ${r}/${spec.runs}`
        const steps: Array<Effect.Effect<RunResult, RunError>> = [
          runFlow(ctx, r, spec.rows, `${label} BatchFlow`),
          ...baselines.map((b) => runBaseline(ctx, b, r, spec.rows, `${label} ${b.name}`))
        ]
        // Alternate the order so that no variant always runs first.
        if (r % 2 === 0) steps.reverse()
        for (const step of steps) yield* step.pipe(Effect.flatMap(record(label)))
      }
      // What the runs left reachable (a leak grows it with --rows; a bound does not).
      const liveHeapAfterMiB = Gc.liveHeapMiB()
      yield* cleanup
      const descriptions: Record<string, string> = {}
      descriptions.BatchFlow = harness.flowDescription
      for (const b of harness.baselines) descriptions[b.name] = b.description
      const report = Report.build({
        spec,
        version: io.version,
        startedAt,
        target: harness.description,
        notes: harness.notes,
        descriptions,
        results,
        idleRssMiB,
        liveHeap: { beforeMiB: liveHeapBeforeMiB, afterMiB: liveHeapAfterMiB }
      })
      io.out(Report.renderText(report))
      if (spec.reports.length > 0) {
        yield* Effect.try({
          try: () => Report.write(report, spec.reports),
          catch: (cause) =>
            new BackendError({ message: `cannot write the report: ${messageOf(cause)}`, cause })
        })
        io.out(`report written to ${spec.reports.join(", ")}`)
      }
      if (!report.ok) io.err("effect-batchflow bench: FAILED (see integrity above)")
      return report.ok ? 0 : 1
    })
  ).pipe(
    Effect.catchAll((error) =>
      Effect.sync(() => {
        io.err(`effect-batchflow bench: ${describeError(error)}`)
        return 1
      })
    )
  )
