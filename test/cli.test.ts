/**
 * The `effect-batchflow bench` command end to end: spawned as a child process (through tsx, so no
 * build is needed), on SQLite and PostgreSQL (and a smoke on MySQL/MariaDB, Redis and noop), with
 * small row counts. Checks the exit code, the JSON and Markdown reports, that the integrity check
 * fails when rows are deleted or changed behind the bench's back (the `BATCHFLOW_BENCH_TAMPER` test
 * hook), and that bad flags give a clear message and exit code 2 before connecting to anything.
 *
 * Every test uses its own table name (SQL) or key prefix (Redis), so runs never touch other tests'
 * data. A server that is down fails the tests.
 */
import { execFile, spawn } from "node:child_process"
import { mkdtempSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import * as NodeContext from "@effect/platform-node/NodeContext"
import * as Effect from "effect/Effect"
import { describe, expect, it } from "vitest"
import type { Io } from "../src/cli/bench.js"
import { main } from "../src/cli/main.js"
import type { Report } from "../src/cli/report.js"

const root = fileURLToPath(new URL("..", import.meta.url))
const pgUrl = process.env.BATCHFLOW_PG_URL ?? "postgres://postgres@127.0.0.1:5432/test"

interface Outcome {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

/** Runs `effect-batchflow <args>` from the repository's TypeScript entry. */
const cli = (args: ReadonlyArray<string>, env: Record<string, string> = {}): Promise<Outcome> =>
  new Promise((resolve) => {
    execFile(
      process.execPath,
      ["--import", "tsx", "src/bin.ts", ...args],
      { cwd: root, env: { ...process.env, ...env }, timeout: 120_000, maxBuffer: 16 * 1024 * 1024 },
      (error, stdout, stderr) => {
        const code = error === null ? 0 : typeof error.code === "number" ? error.code : -1
        resolve({ code, stdout, stderr })
      }
    )
  })

/** Runs the program in this process, capturing what it writes. */
const inProcess = async (args: ReadonlyArray<string>) => {
  const out: Array<string> = []
  const err: Array<string> = []
  const io: Io = {
    out: (line) => out.push(line),
    err: (line) => err.push(line),
    progress: { stream: process.stderr, tty: false },
    version: "test"
  }
  const code = await Effect.runPromise(
    main(["node", "effect-batchflow", ...args], io).pipe(Effect.provide(NodeContext.layer))
  )
  return { code, out: out.join("\n"), err: err.join("\n") }
}

const tempDir = () => mkdtempSync(join(tmpdir(), "batchflow-cli-test-"))

const readReport = (path: string): Report => JSON.parse(readFileSync(path, "utf8")) as Report

const SLOW = 90_000

describe("effect-batchflow bench", () => {
  it(
    "SQLite (the default): exit 0, the figures in the JSON and Markdown reports, the baseline and its ratio",
    async () => {
      const dir = tempDir()
      const json = join(dir, "out.json")
      const md = join(dir, "out.md")
      const run = await cli([
        "bench",
        "--rows",
        "3000",
        "--baseline",
        "--runs",
        "2",
        "--sample-every",
        "50",
        "--table",
        "cli_test_sqlite",
        "--report",
        json,
        "--report",
        md
      ])
      expect(run.stderr).not.toContain("FAILED")
      expect(run.code).toBe(0)
      expect(run.stdout).toContain("W1 on SQLite, embedded file")
      expect(run.stdout).toMatch(/BatchFlow \/ raw better-sqlite3: \d+\.\d\d×/)
      expect(run.stdout).toContain("integrity: OK")

      const report = readReport(json)
      expect(report.ok).toBe(true)
      expect(report.workload).toBe("W1")
      expect(report.backend).toBe("sqlite")
      expect(report.settings).toMatchObject({
        rows: 3000,
        producers: 4,
        flushSize: 500,
        flushIntervalMillis: 50,
        concurrency: 4,
        bufferSize: 10_000,
        conflict: "ignore",
        runs: 2,
        warmupRows: 300,
        baseline: true
      })
      expect(report.variants.map((v) => v.name)).toEqual(["BatchFlow", "raw better-sqlite3"])
      for (const v of report.variants) {
        expect(v.runs).toBe(2)
        expect(v.integrityOk).toBe(2)
        expect(v.medianRowsPerSecond).toBeGreaterThan(0)
        expect(v.minRowsPerSecond).toBeLessThanOrEqual(v.maxRowsPerSecond)
        expect(v.peakRssMiB).toBeGreaterThan(10)
      }
      expect(report.variants[0]!.description).toContain("INSERT OR IGNORE")
      expect(report.ratios).toHaveLength(1)
      expect(report.ratios[0]!.baseline).toBe("raw better-sqlite3")
      expect(report.ratios[0]!.pairs).toBe(2)
      expect(report.ratios[0]!.median).toBeGreaterThan(0)
      // 3000 rows, every 50th written with `write`: 60 samples per run, 2 measured runs.
      expect(report.latency?.samples).toBe(120)
      expect(report.latency!.p50Millis).toBeLessThanOrEqual(report.latency!.p99Millis)
      expect(report.latency!.p99Millis).toBeLessThanOrEqual(report.latency!.maxMillis)
      expect(report.retries).toBe(0)
      expect(report.failedRows).toBe(0)
      expect(report.processPeakRssMiB).toBeGreaterThan(10)
      expect(report.integrity).toEqual({ ok: true, checkedRuns: 6, failures: [] })
      // 2 warm-up runs (run 0) and 2 × 2 measured runs, each checked.
      expect(report.runs.map((r) => [r.variant, r.run])).toEqual([
        ["BatchFlow", 0],
        ["raw better-sqlite3", 0],
        ["BatchFlow", 1],
        ["raw better-sqlite3", 1],
        ["raw better-sqlite3", 2],
        ["BatchFlow", 2]
      ])
      for (const r of report.runs) {
        expect(r.rows).toBe(r.run === 0 ? 300 : 3000)
        expect(r.integrity).toMatchObject({ ok: true, expected: r.rows, found: r.rows, wrongContent: 0 })
        expect(r.integrity.spotChecked).toBeGreaterThan(0)
      }

      const markdown = readFileSync(md, "utf8")
      expect(markdown).toContain("# effect-batchflow bench: W1, sqlite")
      expect(markdown).toContain("| BatchFlow |")
      expect(markdown).toContain("| raw better-sqlite3 (baseline) |")
      expect(markdown).toContain("Result: OK")
    },
    SLOW
  )

  it(
    "SQLite: rows deleted behind the bench's back fail the integrity check (exit 1)",
    async () => {
      const dir = tempDir()
      const json = join(dir, "out.json")
      const run = await cli(
        ["bench", "--rows", "2000", "--table", "cli_test_sqlite_deleted", "--report", json],
        {
          BATCHFLOW_BENCH_TAMPER: "delete:3"
        }
      )
      expect(run.code).toBe(1)
      expect(run.stderr).toContain("BATCHFLOW_BENCH_TAMPER is set")
      expect(run.stderr).toContain("FAILED")
      expect(run.stdout).toContain("3 rows missing (found 1997 of 2000)")
      const report = readReport(json)
      expect(report.ok).toBe(false)
      expect(report.integrity.ok).toBe(false)
      // The warm-up is not tampered with: only the measured run fails.
      expect(report.integrity.failures).toHaveLength(1)
      expect(report.integrity.failures[0]).toMatchObject({ variant: "BatchFlow", run: 1 })
      expect(report.runs[1]!.integrity).toMatchObject({ ok: false, expected: 2000, found: 1997 })
    },
    SLOW
  )

  it(
    "SQLite: rows changed behind the bench's back fail the content check (exit 1)",
    async () => {
      const run = await cli(
        ["bench", "--rows", "2000", "--warmup", "0", "--table", "cli_test_sqlite_changed"],
        {
          BATCHFLOW_BENCH_TAMPER: "corrupt:2"
        }
      )
      expect(run.code).toBe(1)
      expect(run.stdout).toContain("2 rows with wrong content")
    },
    SLOW
  )

  it(
    "PostgreSQL: exit 0, report contents, the table dropped afterwards",
    async () => {
      const dir = tempDir()
      const json = join(dir, "out.json")
      const run = await cli([
        "bench",
        "--backend",
        "pg",
        "--url",
        pgUrl,
        "--rows",
        "3000",
        "--baseline",
        "--conflict",
        "update",
        "--table",
        "cli_test_pg_events",
        "--report",
        json
      ])
      expect(run.stderr).not.toContain("FAILED")
      expect(run.code).toBe(0)
      expect(run.stdout).toContain("W1 on PostgreSQL at")
      const report = readReport(json)
      expect(report.ok).toBe(true)
      expect(report.backend).toBe("pg")
      expect(report.settings.conflict).toBe("update")
      expect(report.variants.map((v) => [v.name, v.integrityOk])).toEqual([
        ["BatchFlow", 1],
        ["raw pg unnest", 1]
      ])
      expect(report.variants[0]!.description).toContain("ON CONFLICT")
      expect(report.ratios[0]).toMatchObject({ baseline: "raw pg unnest", pairs: 1 })
      expect(report.integrity.ok).toBe(true)
      expect(report.runs.every((r) => r.integrity.found === r.rows && r.integrity.wrongContent === 0)).toBe(
        true
      )

      // The bench removes its table unless --keep.
      const pg = (await import("pg")).default
      const client = new pg.Client({ connectionString: pgUrl })
      await client.connect()
      try {
        const exists = await client.query("SELECT to_regclass('cli_test_pg_events') AS t")
        expect(exists.rows[0].t).toBeNull()
      } finally {
        await client.end()
      }
    },
    SLOW
  )

  it(
    "PostgreSQL: rows deleted behind the bench's back fail the integrity check (exit 1)",
    async () => {
      const dir = tempDir()
      const json = join(dir, "out.json")
      const run = await cli(
        [
          "bench",
          "--backend",
          "pg",
          "--url",
          pgUrl,
          "--rows",
          "2000",
          "--warmup",
          "0",
          "--table",
          "cli_test_pg_deleted",
          "--report",
          json
        ],
        { BATCHFLOW_BENCH_TAMPER: "delete:5" }
      )
      expect(run.code).toBe(1)
      expect(run.stdout).toContain("5 rows missing (found 1995 of 2000)")
      const report = readReport(json)
      expect(report.ok).toBe(false)
      expect(report.integrity.failures).toEqual([
        {
          variant: "BatchFlow",
          run: 1,
          problems: expect.arrayContaining(["5 rows missing (found 1995 of 2000)"])
        }
      ])
    },
    SLOW
  )

  it(
    "MySQL/MariaDB, Redis and noop (W0): a small run with the baseline passes",
    async () => {
      const runs = await Promise.all([
        cli([
          "bench",
          "--backend",
          "mysql",
          "--rows",
          "1500",
          "--baseline",
          "--table",
          "cli_test_mysql_events"
        ]),
        cli(["bench", "--backend", "redis", "--rows", "1500", "--baseline", "--table", "cli_test_redis"]),
        cli(["bench", "--backend", "noop", "--rows", "5000", "--baseline", "--submit-all"])
      ])
      for (const run of runs) {
        expect(run.stderr).not.toContain("FAILED")
        expect(run.code).toBe(0)
        expect(run.stdout).toContain("integrity: OK")
      }
      expect(runs[0]!.stdout).toContain("BatchFlow / raw mysql2 query()")
      expect(runs[1]!.stdout).toContain("BatchFlow / raw ioredis pipeline")
      expect(runs[1]!.stdout).toContain("BatchFlow / raw ioredis MSET")
      expect(runs[1]!.stdout).toContain("keys cli_test_redis:*")
      expect(runs[2]!.stdout).toContain("W0 on no database")
      expect(runs[2]!.stdout).toContain("BatchFlow / plain-JS batcher")
    },
    SLOW
  )

  it(
    "--metrics-port serves the flow's Prometheus metrics while the bench runs",
    async () => {
      const child = spawn(
        process.execPath,
        [
          "--import",
          "tsx",
          "src/bin.ts",
          "bench",
          "--backend",
          "pg",
          "--url",
          pgUrl,
          "--rows",
          "150000",
          "--table",
          "cli_test_pg_metrics",
          "--metrics-port",
          "0"
        ],
        { cwd: root, env: { ...process.env }, stdio: ["ignore", "pipe", "pipe"] }
      )
      const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)))
      let stderr = ""
      child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
        stderr += chunk
      })
      child.stdout.resume()
      let body = ""
      for (let i = 0; i < 400 && !body.includes("batchflow_target_rows_total"); i++) {
        await new Promise((resolve) => setTimeout(resolve, 50))
        const url = /Prometheus metrics at (http:\/\/\S+)/.exec(stderr)?.[1]
        if (url === undefined) continue
        body = await fetch(url)
          .then((response) => response.text())
          .catch(() => "")
      }
      expect(await exited).toBe(0)
      expect(body).toContain('batchflow_executor_concurrency{database="pg",instance_id="bench"')
      expect(body).toMatch(/batchflow_target_rows_total\{[^}]*outcome="committed"[^}]*\} \d+/)
    },
    SLOW
  )

  it(
    "bad flags: a message naming the flag and exit code 2, before connecting to anything",
    async () => {
      const cases: ReadonlyArray<readonly [ReadonlyArray<string>, string]> = [
        [["--rows", "0"], '--rows must be an integer ≥ 1 (got "0")'],
        [["--rows", "many"], '--rows must be an integer ≥ 1 (got "many")'],
        [["--backend", "oracle"], '--backend must be one of sqlite, pg, mysql, redis, noop (got "oracle")'],
        [["--buffer", "100"], "--buffer must be an integer ≥ 500 (at least flushSize) (got 100)"],
        [["--flush-interval", "soon"], "--flush-interval must be a duration > 0"],
        [["--conflict", "merge"], '--conflict must be one of none, ignore, replace, update (got "merge")'],
        [["--backend", "redis", "--conflict", "ignore"], "--conflict applies to the SQL backends"],
        [
          ["--backend", "pg", "--url", "mysql://root@127.0.0.1/test"],
          "--url for pg must start with postgres://"
        ],
        [["--report", "out.txt"], "--report must name a .json or .md file"],
        [["--table", "drop table;"], "--table must be a plain identifier"],
        [["--metrics-port", "70000"], "--metrics-port must be an integer from 0 to 65535"]
      ]
      // In process (the same program the executable runs), to keep the test fast.
      for (const [args, message] of cases) {
        const run = await inProcess(["bench", ...args])
        expect({ args, code: run.code }).toEqual({ args, code: 2 })
        expect(run.err).toContain(message)
        expect(run.err).toContain("effect-batchflow bench --help")
        expect(run.out).toBe("")
      }
      // Several problems are reported together.
      const many = await inProcess(["bench", "--rows", "0", "--runs", "x"])
      expect(many.code).toBe(2)
      expect(many.err).toContain("--rows must be")
      expect(many.err).toContain('--runs must be an integer ≥ 1 (got "x")')
      // And as a process: the exit code, and @effect/cli's own message for an unknown flag.
      const [invalid, unknown] = await Promise.all([
        cli(["bench", "--rows", "-5"]),
        cli(["bench", "--rowz", "5"])
      ])
      expect(invalid.code).toBe(2)
      expect(unknown.code).toBe(2)
      expect(unknown.stderr).toContain("Received unknown argument: '--rowz'")
      expect(unknown.stderr).toContain("effect-batchflow bench --help")
    },
    SLOW
  )

  it(
    "an unreachable server: a message naming it and exit code 1",
    async () => {
      const run = await inProcess([
        "bench",
        "--backend",
        "pg",
        "--url",
        "postgres://postgres@127.0.0.1:1/test"
      ])
      expect(run.code).toBe(1)
      expect(run.err).toContain("cannot connect to PostgreSQL at postgres://postgres@127.0.0.1:1/test")
      expect(run.err).toContain("BATCHFLOW_PG_URL")
    },
    SLOW
  )
})
