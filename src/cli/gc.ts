/**
 * The V8 young-generation size a bench runs with, and `--semi-space`: the same measurement re-run in
 * child Node processes started with `--max-semi-space-size=<MiB>`, so that one invocation shows what
 * the flag changes (Node CPU per row, rows/s, peak RSS).
 *
 * Each short-lived row object dies young if the young generation (two semi-spaces) is large enough
 * to hold what is allocated while it lives; otherwise it is copied, promoted, and collected later by
 * a full GC. V8's default maximum semi-space is 16 MiB on 64-bit Node 20.
 *
 * @since 0.1.0
 */
import { spawn } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { setFlagsFromString } from "node:v8"
import { runInNewContext } from "node:vm"
import * as Duration from "effect/Duration"
import { type BenchSpec, defaultTable } from "./workload.js"

/**
 * The `--max-semi-space-size` in effect, and where it came from.
 *
 * @since 0.1.0
 * @category models
 */
export interface SemiSpace {
  /** MiB, or `null`: V8's default (16 MiB on 64-bit Node 20). */
  readonly maxSemiSpaceMiB: number | null
  /** `default`, `execArgv` (the node command line) or `NODE_OPTIONS`. */
  readonly source: "default" | "execArgv" | "NODE_OPTIONS"
}

const flagPattern = /--max[-_]semi[-_]space[-_]size[= ](\d+)/g

const lastValue = (text: string): number | undefined => {
  let found: number | undefined
  for (const match of text.matchAll(flagPattern)) found = Number(match[1])
  return found
}

/**
 * The semi-space flag of this process: the node command line wins over `NODE_OPTIONS` (Node puts
 * `NODE_OPTIONS` first, and the last V8 flag counts).
 *
 * @since 0.1.0
 * @category utils
 */
export const semiSpaceInEffect = (
  execArgv: ReadonlyArray<string> = process.execArgv,
  nodeOptions: string | undefined = process.env.NODE_OPTIONS
): SemiSpace => {
  const fromArgv = lastValue(execArgv.join(" "))
  if (fromArgv !== undefined) return { maxSemiSpaceMiB: fromArgv, source: "execArgv" }
  const fromEnv = nodeOptions === undefined ? undefined : lastValue(nodeOptions)
  if (fromEnv !== undefined) return { maxSemiSpaceMiB: fromEnv, source: "NODE_OPTIONS" }
  return { maxSemiSpaceMiB: null, source: "default" }
}

/**
 * One line: `16 MiB (V8 default)`, `64 MiB (--max-semi-space-size=64, NODE_OPTIONS)`.
 *
 * @since 0.1.0
 * @category rendering
 */
export const describeSemiSpace = (s: SemiSpace): string =>
  s.maxSemiSpaceMiB === null
    ? "default (16 MiB on 64-bit Node 20)"
    : `${s.maxSemiSpaceMiB} MiB (--max-semi-space-size=${s.maxSemiSpaceMiB}, ${s.source === "execArgv" ? "node command line" : "NODE_OPTIONS"})`

let collect: (() => void) | undefined

/**
 * The live JS heap (MiB): `heapUsed` right after a full, compacting GC, so that garbage V8 has not
 * collected yet does not count. Without `--expose-gc` the collector is reached through a fresh
 * context once the flag is set (`v8.setFlagsFromString`). Outside any clock.
 *
 * @since 0.1.0
 * @category utils
 */
export const liveHeapMiB = (): number => {
  if (collect === undefined) {
    const exposed = (globalThis as { gc?: () => void }).gc
    if (typeof exposed === "function") collect = exposed
    else {
      setFlagsFromString("--expose-gc")
      collect = runInNewContext("gc") as () => void
    }
  }
  collect()
  return process.memoryUsage().heapUsed / (1024 * 1024)
}

/**
 * Set in the children `--semi-space` starts; such a child never starts children itself.
 *
 * @since 0.1.0
 * @category constants
 */
export const CHILD_VARIABLE = "BATCHFLOW_BENCH_CHILD"

/**
 * The flags that make a child run the same measurement as `spec` (without `--semi-space`,
 * `--report` and `--metrics-port`; the default table is left to the child, which names it after its
 * own process id).
 *
 * @since 0.1.0
 * @category utils
 */
export const childArgs = (spec: BenchSpec, report: string): Array<string> => {
  const args = [
    "bench",
    "--backend",
    spec.backend,
    "--rows",
    String(spec.rows),
    "--producers",
    String(spec.producers),
    "--flush-size",
    String(spec.flushSize),
    "--flush-interval",
    `${Duration.toMillis(spec.flushInterval)}ms`,
    "--concurrency",
    String(spec.concurrency),
    "--buffer",
    String(spec.bufferSize),
    "--runs",
    String(spec.runs),
    "--warmup",
    String(spec.warmup),
    "--sample-every",
    String(spec.sampleEvery),
    "--report",
    report
  ]
  if (spec.backend !== "noop" && spec.backend !== "redis") args.push("--conflict", spec.conflict)
  if (spec.url !== undefined) args.push("--url", spec.url)
  if (spec.baseline) args.push("--baseline")
  if (spec.submitAll) args.push("--submit-all")
  if (spec.keep) args.push("--keep")
  if (spec.table !== defaultTable(spec.backend)) args.push("--table", spec.table)
  return args
}

/** `NODE_OPTIONS` without a semi-space flag (the child's own flag is the one that counts). */
const withoutSemiSpace = (nodeOptions: string | undefined): string | undefined => {
  if (nodeOptions === undefined) return undefined
  const rest = nodeOptions.replace(flagPattern, "").replace(/\s+/g, " ").trim()
  return rest === "" ? undefined : rest
}

/**
 * Runs the measurement of `spec` in a child Node process started with
 * `--max-semi-space-size=<mib>` (`null`: no flag, V8's default), forwarding its output line by line,
 * and answers its exit code and its JSON report (parsed by the caller), or the reason it has none.
 *
 * @since 0.1.0
 * @category runners
 */
export const runChild = (
  spec: BenchSpec,
  mib: number | null,
  out: (line: string) => void,
  err: (line: string) => void
): Promise<{ readonly code: number; readonly report: string | undefined }> => {
  const dir = mkdtempSync(join(tmpdir(), "effect-batchflow-semi-"))
  const report = join(dir, "report.json")
  const script = fileURLToPath(new URL("../../bin/effect-batchflow.js", import.meta.url))
  const env: Record<string, string | undefined> = {
    ...process.env,
    [CHILD_VARIABLE]: "1",
    NODE_OPTIONS: withoutSemiSpace(process.env.NODE_OPTIONS)
  }
  if (env.NODE_OPTIONS === undefined) delete env.NODE_OPTIONS
  const flags = mib === null ? [] : [`--max-semi-space-size=${mib}`]
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [...flags, script, ...childArgs(spec, report)], {
      env,
      stdio: ["ignore", "pipe", "pipe"]
    })
    const forward = (stream: NodeJS.ReadableStream, to: (line: string) => void) => {
      let pending = ""
      stream.setEncoding("utf8")
      stream.on("data", (chunk: string) => {
        pending += chunk
        const lines = pending.split("\n")
        pending = lines.pop() ?? ""
        for (const line of lines) to(line)
      })
      stream.on("end", () => {
        if (pending !== "") to(pending)
      })
    }
    forward(child.stdout, out)
    forward(child.stderr, err)
    // Ctrl-C reaches the child too (same process group); SIGTERM to the parent is passed on.
    const onTerm = () => child.kill("SIGTERM")
    process.once("SIGTERM", onTerm)
    let finished = false
    const finish = (code: number) => {
      if (finished) return
      finished = true
      process.removeListener("SIGTERM", onTerm)
      let text: string | undefined
      try {
        text = readFileSync(report, "utf8")
      } catch {
        text = undefined
      }
      rmSync(dir, { recursive: true, force: true })
      resolve({ code, report: text })
    }
    child.on("error", (e) => {
      err(`cannot start a child node process: ${e.message}`)
      finish(1)
    })
    child.on("close", (code, signal) => finish(code ?? (signal === null ? 1 : 130)))
  })
}
