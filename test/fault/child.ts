/**
 * Runs a TypeScript scenario script in a child Node process (`node --import tsx`) and reports how it
 * ended. Scenarios whose point is that a process exits (a flow that closes despite a hung pool, say)
 * must run in a child: a hung socket would keep the test process alive, and only an exit proves nothing
 * is left running.
 *
 * Scenario scripts import the library with relative paths (`../../../src/index.js` from
 * test/fault/scenarios/): tsx maps `.js` to the `.ts` file. Bare `effect-batchflow` imports happen to
 * work too because tsx reads tsconfig.json's `paths` from the working directory (the repo root here),
 * but only from there, so relative imports are the robust choice.
 *
 * Convention: a scenario prints its result as one JSON line, last on stdout (`json` in the result).
 */
import { spawn } from "node:child_process"
import { createRequire } from "node:module"
import { fileURLToPath, pathToFileURL } from "node:url"
import { guard, signal } from "./process.js"

export interface ChildOptions {
  /** Added to (and overriding) the test process's environment. */
  readonly env?: Readonly<Record<string, string>>
  /** The child is SIGKILLed when it has not exited by then. Default 30 s. */
  readonly timeoutMs?: number
  /** Command-line arguments after the script path. */
  readonly args?: ReadonlyArray<string>
}

export interface ChildResult {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  /**
   * False when the harness had to kill it at `timeoutMs`. A child that dies of a signal from elsewhere
   * (itself, say) still counts as exiting by itself: see `signal`.
   */
  readonly exitedByItself: boolean
  readonly durationMs: number
  readonly stdout: string
  readonly stderr: string
  /** The last non-empty stdout line parsed as JSON, `undefined` when there is none or it is not JSON. */
  readonly json: unknown
}

export const repoRoot = fileURLToPath(new URL("../../", import.meta.url))

/** tsx's loader by absolute URL, so `--import` does not depend on the child's working directory. */
const tsxLoader = pathToFileURL(createRequire(import.meta.url).resolve("tsx")).href

/** Output kept per stream: enough for a JSON result and an error, bounded for a chatty scenario. */
const MAX_OUTPUT = 4 * 1024 * 1024

const lastJsonLine = (stdout: string): unknown => {
  const line = stdout
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "")
    .at(-1)
  if (line === undefined) return undefined
  try {
    return JSON.parse(line)
  } catch {
    return undefined
  }
}

/** Runs `scriptPath` (absolute, or relative to the repo root) to its exit, killing it at `timeoutMs`. */
export const runChild = (scriptPath: string, options: ChildOptions = {}): Promise<ChildResult> =>
  new Promise((resolve, reject) => {
    const timeoutMs = options.timeoutMs ?? 30_000
    const started = performance.now()
    // Detached: the child leads its own process group, so the kill reaches anything it spawned too.
    const child = spawn(process.execPath, ["--import", tsxLoader, scriptPath, ...(options.args ?? [])], {
      cwd: repoRoot,
      env: { ...process.env, ...options.env },
      stdio: ["ignore", "pipe", "pipe"],
      detached: true
    })
    const killGroup = () => {
      if (child.pid !== undefined) signal(-child.pid, "SIGKILL")
    }
    const last = guard({ sync: killGroup, shell: child.pid === undefined ? ":" : `kill -9 -${child.pid}` })
    let stdout = ""
    let stderr = ""
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      if (stdout.length < MAX_OUTPUT) stdout += chunk
    })
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      if (stderr.length < MAX_OUTPUT) stderr += chunk
    })
    let killed = false
    const timer = setTimeout(() => {
      killed = true
      killGroup()
    }, timeoutMs)
    child.once("error", (cause) => {
      clearTimeout(timer)
      last.release()
      reject(new Error(`cannot run ${scriptPath}: ${String(cause)}`))
    })
    child.once("exit", (code, sig) => {
      const durationMs = Math.round(performance.now() - started)
      clearTimeout(timer)
      // Whatever the script left behind in its group (it should be nothing) goes with it.
      killGroup()
      last.release()
      // 'close' follows once stdout/stderr are drained; bounded in case a leftover holds a pipe open.
      const finish = () => {
        clearTimeout(drain)
        resolve({
          code,
          signal: sig,
          exitedByItself: !killed,
          durationMs,
          stdout,
          stderr,
          json: lastJsonLine(stdout)
        })
      }
      const drain = setTimeout(finish, 2_000)
      child.once("close", finish)
    })
  })
