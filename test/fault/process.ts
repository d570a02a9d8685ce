/**
 * Process plumbing for the fault harness: bounded command runs, bounded polling, PID checks, log tails,
 * and the two last-resort guards that stop private servers when the test process dies without running
 * its teardown.
 *
 * Why two guards: a process 'exit' handler covers a normal exit after a failed hook (vitest exits the
 * worker), but not a worker killed by a signal (a timed-out or interrupted run), where no JavaScript runs
 * any more. For that case each server also gets a "reaper": a detached `sh` that polls the test process
 * and runs the server's cleanup once the test process is gone. Both are removed by the server's `stop()`.
 */
import { type ChildProcess, execFile, spawn, spawnSync } from "node:child_process"
import { existsSync, readFileSync } from "node:fs"

export interface CommandOutput {
  readonly stdout: string
  readonly stderr: string
}

/**
 * Runs `file args` to completion with a hard time limit (SIGKILL when it is exceeded); rejects with an
 * error carrying the command line and its output when it fails, so a failed start is readable.
 */
export const run = (
  file: string,
  args: ReadonlyArray<string>,
  options: { readonly timeoutMs: number; readonly cwd?: string }
): Promise<CommandOutput> =>
  new Promise((resolve, reject) => {
    execFile(
      file,
      [...args],
      {
        timeout: options.timeoutMs,
        killSignal: "SIGKILL",
        maxBuffer: 16 * 1024 * 1024,
        encoding: "utf8",
        ...(options.cwd === undefined ? {} : { cwd: options.cwd })
      },
      (error, stdout, stderr) => {
        if (error === null) return resolve({ stdout, stderr })
        const how =
          error.killed === true
            ? `was killed after ${options.timeoutMs} ms`
            : typeof error.code === "number"
              ? `exited with code ${error.code}`
              : `failed: ${error.message}`
        reject(
          new Error(
            `\`${file} ${args.join(" ")}\` ${how}\n--- stdout\n${tail(stdout)}\n--- stderr\n${tail(stderr)}`
          )
        )
      }
    )
  })

/** The last `lines` lines of a text. */
export const tail = (text: string, lines = 30): string => text.split("\n").slice(-lines).join("\n")

/** The last `lines` lines of a log file, or a note when it cannot be read (it may not exist yet). */
export const logTail = (path: string, lines = 30): string => {
  try {
    return tail(readFileSync(path, "utf8"), lines)
  } catch (cause) {
    return `(no log at ${path}: ${String(cause)})`
  }
}

/**
 * Whether a process with this PID runs. A zombie counts as gone: a server that is not our child (the
 * postmaster, started by pg_ctl) is reaped by PID 1, and on these machines PID 1 reaps only about once a
 * second, so `kill -0` alone would report a stopped server as alive for up to a second.
 */
export const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
  } catch (cause) {
    return (cause as NodeJS.ErrnoException).code === "EPERM"
  }
  try {
    // /proc/PID/stat: "pid (comm) state ..."; comm may contain spaces and parentheses.
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8")
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z"
  } catch {
    // With /proc (Linux), a missing entry means it was reaped just now; without /proc, trust kill -0.
    return !existsSync("/proc/self")
  }
}

/** Sends a signal, ignoring a process that is already gone. */
export const signal = (pid: number, sig: NodeJS.Signals): void => {
  try {
    process.kill(pid, sig)
  } catch {
    // Already gone: nothing to stop.
  }
}

export const sleep = (millis: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, millis))

/** Thrown by a `waitFor` check to stop waiting at once (a server that exited will not become ready). */
export class GiveUp extends Error {}

/**
 * Polls `check` every `intervalMs` until it returns a value other than `undefined`, at most `timeoutMs`;
 * then rejects with `describe()` (called late, so it can read a log tail). A check that throws is
 * retried: during start-up "not yet" is usually an error (connection refused); one that throws `GiveUp`
 * ends the wait with `describe(thatError)` right away.
 */
export const waitFor = async <A>(
  check: () => Promise<A | undefined> | A | undefined,
  options: {
    readonly timeoutMs: number
    readonly intervalMs?: number
    /** One check that takes longer counts as failed (a port held by something that never answers). */
    readonly attemptTimeoutMs?: number
    readonly describe: (lastError: unknown) => string
  }
): Promise<A> => {
  const deadline = Date.now() + options.timeoutMs
  const attemptTimeoutMs = options.attemptTimeoutMs ?? 2_000
  let lastError: unknown
  while (true) {
    try {
      let timer: NodeJS.Timeout | undefined
      const value = await Promise.race([
        Promise.resolve().then(check),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new Error(`no answer within ${attemptTimeoutMs} ms`)),
            attemptTimeoutMs
          )
        })
      ]).finally(() => clearTimeout(timer))
      if (value !== undefined) return value
    } catch (cause) {
      if (cause instanceof GiveUp) throw new Error(options.describe(cause))
      lastError = cause
    }
    if (Date.now() >= deadline)
      throw new Error(`timed out after ${options.timeoutMs} ms: ${options.describe(lastError)}`)
    await sleep(options.intervalMs ?? 100)
  }
}

/** Waits until the process is gone, at most `timeoutMs`; returns whether it is gone. */
export const waitExit = async (pid: number, timeoutMs: number): Promise<boolean> => {
  const deadline = Date.now() + timeoutMs
  while (isAlive(pid)) {
    if (Date.now() >= deadline) return false
    await sleep(20)
  }
  return true
}

/**
 * Waits until a child we spawned has exited, at most `timeoutMs`. A child of ours stays a zombie (and
 * `kill -0` keeps succeeding) until Node reaps it, so its 'exit' event is the reliable signal.
 */
export const waitChildExit = (child: ChildProcess, timeoutMs: number): Promise<boolean> =>
  new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve(true)
    const timer = setTimeout(() => {
      child.off("exit", onExit)
      resolve(false)
    }, timeoutMs)
    const onExit = () => {
      clearTimeout(timer)
      resolve(true)
    }
    child.once("exit", onExit)
  })

/** Single-quotes a string for `sh`. */
export const shellQuote = (text: string): string => `'${text.replaceAll("'", `'\\''`)}'`

const exitCleanups = new Set<() => void>()
let exitHandlerInstalled = false

const runExitCleanups = () => {
  for (const cleanup of exitCleanups) {
    try {
      cleanup()
    } catch {
      // Last resort: keep going with the others.
    }
  }
  exitCleanups.clear()
}

export interface Guard {
  /** Removes the exit handler entry and kills the reaper (call after a clean stop). */
  readonly release: () => void
}

/**
 * Registers a server's last-resort cleanups: `sync` runs in the process 'exit' handler (only synchronous
 * work is possible there), `shell` runs in a detached reaper shell once the test process has died.
 */
export const guard = (cleanup: { readonly sync: () => void; readonly shell: string }): Guard => {
  if (!exitHandlerInstalled) {
    exitHandlerInstalled = true
    process.on("exit", runExitCleanups)
  }
  // The reaper polls our PID twice a second; it is detached (its own session, so a Ctrl-C sent to the
  // test's process group does not kill it before it has cleaned up) and unref'd (it never keeps the test
  // process alive).
  const reaper = spawn(
    "sh",
    ["-c", `while kill -0 ${process.pid} 2>/dev/null; do sleep 0.5; done; ${cleanup.shell}`],
    { detached: true, stdio: "ignore" }
  )
  reaper.on("error", () => undefined)
  reaper.unref()
  const killReaper = () => {
    if (reaper.pid !== undefined) signal(reaper.pid, "SIGKILL")
  }
  const onExit = () => {
    killReaper()
    cleanup.sync()
  }
  exitCleanups.add(onExit)
  return {
    release: () => {
      exitCleanups.delete(onExit)
      killReaper()
    }
  }
}

/** Runs a command synchronously with a time limit, ignoring failures (for the 'exit' handler). */
export const runSyncQuietly = (file: string, args: ReadonlyArray<string>, timeoutMs: number): void => {
  spawnSync(file, [...args], { stdio: "ignore", timeout: timeoutMs, killSignal: "SIGKILL" })
}
