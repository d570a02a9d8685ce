/**
 * examples/promise-http-server.ts as a process of its own against the real PostgreSQL (a table of
 * its own): N requests accepted, SIGTERM, exit 0, and every one of the N rows in the table.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { fileURLToPath } from "node:url"
import pg from "pg"
import { afterAll, beforeAll, describe, expect, it } from "vitest"

const root = fileURLToPath(new URL("..", import.meta.url))
const pgUrl = process.env.BATCHFLOW_PG_URL ?? "postgres://postgres@127.0.0.1:5432/test"
const table = "promise_http_events"
const pool = new pg.Pool({ connectionString: pgUrl, max: 2 })

beforeAll(() => pool.query(`DROP TABLE IF EXISTS ${table}`))
afterAll(async () => {
  await pool.query(`DROP TABLE IF EXISTS ${table}`)
  await pool.end()
})

/** Starts the example and resolves with its port once it prints it. */
const start = (): Promise<{ child: ChildProcess; port: number; output: () => string }> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", "examples/promise-http-server.ts"], {
      cwd: root,
      env: { ...process.env, PORT: "0", EVENTS_TABLE: table, BATCHFLOW_PG_URL: pgUrl },
      stdio: ["ignore", "pipe", "pipe"]
    })
    let output = ""
    const onData = (chunk: Buffer) => {
      output += chunk.toString()
      const port = /listening on (\d+)/.exec(output)?.[1]
      if (port !== undefined) resolve({ child, port: Number(port), output: () => output })
    }
    child.stdout!.on("data", onData)
    child.stderr!.on("data", onData)
    child.once("exit", (code) =>
      reject(new Error(`the example exited (${code}) before listening:\n${output}`))
    )
  })

const exitOf = (child: ChildProcess): Promise<number | null> =>
  new Promise((resolve) => child.once("exit", (code) => resolve(code)))

describe("examples/promise-http-server.ts", () => {
  it("accepts N events, and on SIGTERM writes them all and exits 0", { timeout: 60_000 }, async () => {
    const { child, port, output } = await start()
    const exited = exitOf(child)
    try {
      const post = (body: string) =>
        fetch(`http://127.0.0.1:${port}/events`, { method: "POST", body }).then(async (response) => ({
          status: response.status,
          text: await response.text()
        }))
      const N = 600
      const statuses: Array<number> = []
      for (let from = 1; from <= N; from += 50) {
        const answers = await Promise.all(
          Array.from({ length: 50 }, (_, i) =>
            post(JSON.stringify({ id: from + i, kind: "click", amount: (from + i) % 7 }))
          )
        )
        statuses.push(...answers.map((a) => a.status))
      }
      expect(statuses.filter((s) => s === 202).length).toBe(N)

      const invalid = await post(JSON.stringify({ id: "one", kind: "click", amount: 1 }))
      expect(invalid.status).toBe(400)
      expect(invalid.text).toContain('field "id"')
      expect((await post("not json")).status).toBe(400)

      child.kill("SIGTERM")
      expect(await exited, output()).toBe(0)
      expect(output()).toContain(`closed: ${N} rows written`)
      const { rows } = await pool.query(`SELECT count(*)::int AS n, sum(amount)::int AS total FROM ${table}`)
      let total = 0
      for (let id = 1; id <= N; id++) total += id % 7
      expect(rows[0]).toEqual({ n: N, total })
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL")
    }
  })
})
