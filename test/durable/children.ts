/**
 * Long-running child processes for the crash tests (a worker to kill mid-batch, a producer to kill
 * after its acks): spawned as `node --import tsx`, in a process group of their own, their stdout kept
 * line by line, killed with the group if the test process dies first (the fault harness's guard).
 */
import { type ChildProcess, spawn } from "node:child_process"
import { createRequire } from "node:module"
import { pathToFileURL } from "node:url"
import { repoRoot } from "../fault/child.js"
import { guard, signal } from "../fault/process.js"

const tsxLoader = pathToFileURL(createRequire(import.meta.url).resolve("tsx")).href

export interface Child {
  readonly process: ChildProcess
  readonly lines: () => ReadonlyArray<string>
  readonly output: () => string
  /** Resolves with the first line matching `pattern` (seen before or after the call). */
  readonly line: (pattern: RegExp, timeoutMs?: number) => Promise<string>
  /** Resolves with the exit code (or the signal's name) once it exited. */
  readonly exited: Promise<number | string>
  readonly kill: (sig: NodeJS.Signals) => void
}

export const startChild = (script: string, env: Readonly<Record<string, string>>): Child => {
  const child = spawn(process.execPath, ["--import", tsxLoader, script], {
    cwd: repoRoot,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true
  })
  const killGroup = (sig: NodeJS.Signals) => {
    if (child.pid !== undefined) signal(-child.pid, sig)
  }
  const last = guard({
    sync: () => killGroup("SIGKILL"),
    shell: child.pid === undefined ? ":" : `kill -9 -${child.pid}`
  })
  const lines: Array<string> = []
  let stderr = ""
  let partial = ""
  const watchers = new Set<() => void>()
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
    const parts = (partial + chunk).split("\n")
    partial = parts.pop()!
    lines.push(...parts.filter((l) => l !== ""))
    for (const w of watchers) w()
  })
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
    if (stderr.length < 1_000_000) stderr += chunk
  })
  const exited = new Promise<number | string>((resolve) =>
    child.once("exit", (code, sig) => {
      last.release()
      for (const w of watchers) w()
      resolve(code ?? sig ?? "unknown")
    })
  )
  const output = () =>
    `--- stdout (last 20 lines)\n${lines.slice(-20).join("\n")}\n--- stderr\n${stderr.slice(-4000)}`
  const line = (pattern: RegExp, timeoutMs = 20_000) =>
    new Promise<string>((resolve, reject) => {
      const check = () => {
        const found = lines.find((l) => pattern.test(l))
        if (found !== undefined) {
          cleanup()
          resolve(found)
        } else if (child.exitCode !== null || child.signalCode !== null) {
          cleanup()
          reject(new Error(`${script} exited before printing ${pattern}\n${output()}`))
        }
      }
      const timer = setTimeout(() => {
        cleanup()
        reject(new Error(`${script} printed no ${pattern} within ${timeoutMs} ms\n${output()}`))
      }, timeoutMs)
      const cleanup = () => {
        clearTimeout(timer)
        watchers.delete(check)
      }
      watchers.add(check)
      check()
    })
  return { process: child, lines: () => lines, output, line, exited, kill: killGroup }
}
