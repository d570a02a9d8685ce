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
import * as Either from "effect/Either"
import * as Option from "effect/Option"
import { describe, expect, it } from "vitest"
import type { Io } from "../src/cli/bench.js"
import { type Flags, toSpec } from "../src/cli/command.js"
import { colorEnabled, main, stripAnsi } from "../src/cli/main.js"
import type { Report } from "../src/cli/report.js"
import { defaultTable, userTag } from "../src/cli/workload.js"

const root = fileURLToPath(new URL("..", import.meta.url))
const pgUrl = process.env.BATCHFLOW_PG_URL ?? "postgres://postgres@127.0.0.1:5432/test"

interface Outcome {
  readonly code: number
  readonly stdout: string
  readonly stderr: string
}

/** The test process's environment with `env` applied (`undefined` removes a variable). */
const childEnv = (env: Record<string, string | undefined>): Record<string, string> => {
  const merged: Record<string, string | undefined> = { ...process.env, ...env }
  const out: Record<string, string> = {}
  for (const [key, value] of Object.entries(merged)) if (value !== undefined) out[key] = value
  return out
}

/** Runs `effect-batchflow <args>` from the repository's TypeScript entry. */
const cli = (args: ReadonlyArray<string>, env: Record<string, string | undefined> = {}): Promise<Outcome> =>
  new Promise((resolve) => {
    execFile(
      process.execPath,
      ["--import", "tsx", "src/bin.ts", ...args],
      { cwd: root, env: childEnv(env), timeout: 120_000, maxBuffer: 16 * 1024 * 1024 },
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
        warmupRows: 3000,
        baseline: true
      })
      expect(report.variants.map((v) => v.name)).toEqual(["BatchFlow", "raw better-sqlite3"])
      for (const v of report.variants) {
        expect(v.runs).toBe(2)
        expect(v.integrityOk).toBe(2)
        expect(v.medianRowsPerSecond).toBeGreaterThan(0)
        expect(v.minRowsPerSecond).toBeLessThanOrEqual(v.maxRowsPerSecond)
        expect(v.peakRssMiB).toBeGreaterThan(10)
        // Node CPU per row over each run's clock: positive, min ≤ median ≤ max.
        expect(v.minCpuMicrosPerRow).toBeGreaterThan(0)
        expect(v.minCpuMicrosPerRow).toBeLessThanOrEqual(v.medianCpuMicrosPerRow)
        expect(v.medianCpuMicrosPerRow).toBeLessThanOrEqual(v.maxCpuMicrosPerRow)
      }
      expect(report.ratios[0]!.cpu.min).toBeGreaterThan(0)
      expect(report.ratios[0]!.cpu.min).toBeLessThanOrEqual(report.ratios[0]!.cpu.max)
      // The test spawns node without a semi-space flag (NODE_OPTIONS may carry one).
      expect(report.gc.source).not.toBe("execArgv")
      expect(run.stdout).toMatch(
        /Node CPU µs\/row \(user \+ system over each run's clock\): BatchFlow \d+\.\d+ \(\d+\.\d+–\d+\.\d+\)/
      )
      expect(run.stdout).toMatch(/BatchFlow uses \d+\.\d\d× \(.*\) the CPU per row of raw better-sqlite3/)
      expect(run.stdout).toMatch(/run 1\/2 +BatchFlow .* \d+\.\d\d µs\/row CPU/)
      expect(run.stdout).toContain("V8 max semi-space (young generation): ")
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
      // The idle RSS is taken before the first run: the peak cannot be below it.
      expect(report.idleRssMiB).toBeGreaterThan(10)
      expect(report.processPeakRssMiB).toBeGreaterThanOrEqual(report.idleRssMiB)
      // The live heap after a full GC, before the first run and after the last: a few MiB apart at
      // most (the flow keeps nothing once closed).
      expect(report.liveHeap.beforeMiB).toBeGreaterThan(1)
      expect(Math.abs(report.liveHeap.afterMiB - report.liveHeap.beforeMiB)).toBeLessThan(20)
      expect(run.stdout).toMatch(
        /live JS heap \(after a full GC\): [\d.]+ MiB before the first run, [\d.]+ MiB after the last/
      )
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
        expect(r.cpuMicros).toBeGreaterThan(0)
        expect(r.cpuMicrosPerRow).toBeCloseTo(r.cpuMicros / r.rows, 6)
        expect(r.rows).toBe(3000)
        expect(r.integrity).toMatchObject({ ok: true, expected: r.rows, found: r.rows, wrongContent: 0 })
        expect(r.integrity.spotChecked).toBeGreaterThan(0)
      }

      const markdown = readFileSync(md, "utf8")
      expect(markdown).toContain("# effect-batchflow bench: W1, sqlite")
      expect(markdown).toContain("| BatchFlow |")
      expect(markdown).toContain("| raw better-sqlite3 (baseline) |")
      expect(markdown).toContain("| Node CPU µs/row (min–max) |")
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
    "--semi-space default,8: W0 re-run in a child node process per size, Node CPU µs/row, rows/s and peak RSS side by side",
    async () => {
      const dir = tempDir()
      const json = join(dir, "semi.json")
      const run = await cli(
        [
          "bench",
          "--backend",
          "noop",
          "--rows",
          "20000",
          "--warmup",
          "0",
          "--semi-space",
          "default,8",
          "--report",
          json
        ],
        // The parent's own flag in NODE_OPTIONS is not passed on: each child has only its own.
        { NODE_OPTIONS: "--max-semi-space-size=2" }
      )
      expect(run.stderr).not.toContain("FAILED")
      expect(run.code).toBe(0)
      expect(run.stdout).toContain("a child node process with V8's default semi-space")
      expect(run.stdout).toContain("a child node process with --max-semi-space-size=8")
      expect(run.stdout).toContain(
        "| --max-semi-space-size | variant | rows/s median (min–max) | Node CPU µs/row median (min–max) |"
      )
      expect(run.stdout).toMatch(/\| default \(16 MiB\) \| BatchFlow \| [\d.]+ [kM]? ?\| \d+\.\d\d \|/)
      expect(run.stdout).toMatch(/\| 8 MiB \| BatchFlow \|/)
      const saved = JSON.parse(readFileSync(json, "utf8")) as {
        readonly semiSpace: ReadonlyArray<{
          readonly maxSemiSpaceMiB: number | null
          readonly code: number
          readonly report: Report
        }>
      }
      expect(saved.semiSpace.map((r) => [r.maxSemiSpaceMiB, r.code])).toEqual([
        [null, 0],
        [8, 0]
      ])
      // Each child labels its report with the semi-space it ran with.
      expect(saved.semiSpace[0]!.report.gc).toMatchObject({ maxSemiSpaceMiB: null, source: "default" })
      expect(saved.semiSpace[1]!.report.gc).toMatchObject({ maxSemiSpaceMiB: 8, source: "execArgv" })
      for (const r of saved.semiSpace) {
        expect(r.report.ok).toBe(true)
        expect(r.report.settings.rows).toBe(20_000)
        expect(r.report.variants[0]!.medianCpuMicrosPerRow).toBeGreaterThan(0)
      }
    },
    SLOW
  )

  it("the semi-space in effect is read from the node command line, then NODE_OPTIONS", async () => {
    const { semiSpaceInEffect, describeSemiSpace } = await import("../src/cli/gc.js")
    expect(semiSpaceInEffect([], undefined)).toEqual({ maxSemiSpaceMiB: null, source: "default" })
    expect(semiSpaceInEffect([], "--max-old-space-size=512 --max-semi-space-size=64")).toEqual({
      maxSemiSpaceMiB: 64,
      source: "NODE_OPTIONS"
    })
    expect(semiSpaceInEffect(["--max_semi_space_size=32"], "--max-semi-space-size=64")).toEqual({
      maxSemiSpaceMiB: 32,
      source: "execArgv"
    })
    expect(describeSemiSpace({ maxSemiSpaceMiB: 64, source: "NODE_OPTIONS" })).toBe(
      "64 MiB (--max-semi-space-size=64, NODE_OPTIONS)"
    )
  })

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
          ["--backend", "pg", "--pg-form", "csv"],
          '--pg-form must be one of json, values, unnest (got "csv")'
        ],
        [["--backend", "mysql", "--pg-form", "unnest"], "--pg-form applies to --backend pg, not to mysql"],
        [["--backend", "pg", "--sqlite-direct"], "--sqlite-direct applies to --backend sqlite, not to pg"],
        [
          ["--backend", "sqlite", "--mysql-client"],
          "--mysql-client applies to --backend mysql, not to sqlite"
        ],
        [
          ["--backend", "pg", "--url", "mysql://root@127.0.0.1/test"],
          "--url for pg must start with postgres://"
        ],
        [["--report", "out.txt"], "--report must name a .json or .md file"],
        [["--table", "drop table;"], "--table must be a plain identifier"],
        [["--metrics-port", "70000"], "--metrics-port must be an integer from 0 to 65535"],
        [["--semi-space", "16,lots"], "--semi-space must be a comma-separated list of MiB from 1 to 1024"],
        [["--semi-space", "0"], "--semi-space must be a comma-separated list"],
        [["--semi-space", "32", "--metrics-port", "0"], "--metrics-port does not apply with --semi-space"]
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

/** Runs `f` with a connected node-postgres client on the test database. */
const withPg = async <A>(f: (client: import("pg").Client) => Promise<A>): Promise<A> => {
  const pg = (await import("pg")).default
  const client = new pg.Client({ connectionString: pgUrl })
  await client.connect()
  try {
    return await f(client)
  } finally {
    await client.end()
  }
}

const tableExists = (table: string) =>
  withPg(async (client) => {
    const result = await client.query("SELECT to_regclass($1) AS t", [table])
    return result.rows[0].t !== null
  })

const ESC = String.fromCharCode(27)

/** The flags as @effect/cli gives them when none is passed. */
const noFlags: Flags = {
  backend: "sqlite",
  rows: Option.none(),
  producers: "4",
  flushSize: "500",
  flushInterval: "50ms",
  concurrency: "4",
  buffer: "10000",
  conflict: Option.none(),
  pgForm: Option.none(),
  sqliteDirect: false,
  mysqlClient: false,
  url: Option.none(),
  runs: "1",
  warmup: Option.none(),
  baseline: false,
  report: [],
  sampleEvery: "1000",
  submitAll: false,
  table: Option.none(),
  keep: false,
  metricsPort: Option.none(),
  semiSpace: Option.none()
}

describe("effect-batchflow bench: help, colour, flags, default table, Ctrl-C", () => {
  it("--help: every flag shows its own description only, under the full usage line `$ effect-batchflow bench`", async () => {
    const help = await inProcess(["bench", "--help"])
    expect(help.code).toBe(0)
    expect(help.err).toBe("")
    // @effect/cli's generic sentences about the option's type are gone…
    expect(help.out).not.toContain("A user-defined piece of text.")
    expect(help.out).not.toContain("A true or false value.")
    expect(help.out).not.toContain("One of the following:")
    // …and each flag's own description comes right under it.
    for (const [flag, description] of [
      ["--rows integer", "Rows per measured run"],
      ["--producers integer", "Producer fibers"],
      ["--flush-size integer", "Rows per batch (flushSize)"],
      ["--concurrency integer", "Executor calls at once"],
      ["--buffer integer", "Rows buffered before submit waits"],
      ["--runs integer", "Measured runs per variant"],
      ["--warmup integer", "Rows of an unmeasured warm-up run"],
      ["--sample-every integer", "Write every n-th row"],
      ["--metrics-port integer", "Serve Prometheus metrics"],
      ["--flush-interval duration", "Longest wait of a partial batch"],
      ["--baseline", "Also run the raw driver"],
      ["--table name", "The bench's own table"],
      ["--keep", "Keep the table"],
      ["(-h, --help)", "Show the help documentation"]
    ] as const) {
      expect(help.out).toContain(`\n${flag}\n\n  ${description}`)
    }
    // The usage line is the whole command line, not `$ bench`.
    expect(help.out).toMatch(/^\$ effect-batchflow bench \[--backend sqlite \| pg/m)
    expect(help.out).not.toMatch(/^\$ bench/m)
    // --table and its per-user, per-process default are in the help.
    expect(help.out).toContain("--table name")
    expect(help.out).toContain("batchflow_bench_<user>_<pid>")
    expect(help.out).toContain("own table (--table")
    // -h is the same page; the root's help has no generic sentences either.
    const short = await inProcess(["bench", "-h"])
    expect(short.out).toBe(help.out)
    const rootHelp = await inProcess(["--help"])
    expect(rootHelp.code).toBe(0)
    expect(rootHelp.out).toMatch(/^\$ effect-batchflow$/m)
    expect(rootHelp.out).toContain("- bench [--backend")
    expect(rootHelp.out).not.toContain("A true or false value.")
  })

  it(
    "colour only on a terminal: no ANSI codes in a pipe (help, @effect/cli's errors), FORCE_COLOR and NO_COLOR honoured",
    async () => {
      const plain = { FORCE_COLOR: undefined, NO_COLOR: undefined }
      const [piped, forced, forcedOff, unknown] = await Promise.all([
        cli(["bench", "--help"], plain),
        cli(["bench", "--help"], { FORCE_COLOR: "1", NO_COLOR: undefined }),
        cli(["bench", "--help"], { FORCE_COLOR: "0", NO_COLOR: undefined }),
        cli(["bench", "--rowz", "5"], plain)
      ])
      expect(piped.code).toBe(0)
      expect(piped.stdout).toContain("$ effect-batchflow bench [--backend")
      expect(piped.stdout).not.toContain(ESC)
      expect(forcedOff.stdout).not.toContain(ESC)
      expect(forcedOff.stdout).toBe(piped.stdout)
      // Forced: the same page, in colour.
      expect(forced.stdout).toContain(`${ESC}[`)
      expect(stripAnsi(forced.stdout)).toBe(piped.stdout)
      expect(unknown.code).toBe(2)
      expect(unknown.stderr).toContain("Received unknown argument: '--rowz'")
      expect(unknown.stderr).not.toContain(ESC)
      // The decision itself: a terminal, unless NO_COLOR; FORCE_COLOR first; never TERM=dumb.
      expect(colorEnabled({ isTTY: true }, {})).toBe(true)
      expect(colorEnabled({ isTTY: false }, {})).toBe(false)
      expect(colorEnabled({}, {})).toBe(false)
      expect(colorEnabled({ isTTY: true }, { NO_COLOR: "1" })).toBe(false)
      expect(colorEnabled({ isTTY: true }, { NO_COLOR: "" })).toBe(true)
      expect(colorEnabled({ isTTY: true }, { TERM: "dumb" })).toBe(false)
      expect(colorEnabled({ isTTY: false }, { FORCE_COLOR: "1" })).toBe(true)
      expect(colorEnabled({ isTTY: false }, { FORCE_COLOR: "" })).toBe(true)
      expect(colorEnabled({ isTTY: false }, { FORCE_COLOR: "1", NO_COLOR: "1" })).toBe(true)
      expect(colorEnabled({ isTTY: true }, { FORCE_COLOR: "0" })).toBe(false)
      expect(colorEnabled({ isTTY: true }, { FORCE_COLOR: "false" })).toBe(false)
    },
    SLOW
  )

  it("a flag that fails to parse is reported once, by its name, and feeds no check across flags", async () => {
    const abc = await inProcess(["bench", "--rows", "abc"])
    expect(abc.code).toBe(2)
    expect(abc.err).toContain('--rows must be an integer ≥ 1 (got "abc")')
    expect(abc.err).not.toContain("--producers")
    expect(abc.err).not.toContain("--warmup")
    expect(abc.err.match(/must/g)).toHaveLength(1)
    const badProducers = await inProcess(["bench", "--rows", "2", "--producers", "x"])
    expect(badProducers.err).toContain('--producers must be an integer ≥ 1 (got "x")')
    expect(badProducers.err).not.toContain("must not exceed")
    const badBoth = await inProcess(["bench", "--rows", "-1", "--producers", "many"])
    expect(badBoth.err).toContain('--rows must be an integer ≥ 1 (got "-1")')
    expect(badBoth.err).toContain('--producers must be an integer ≥ 1 (got "many")')
    expect(badBoth.err).not.toContain("must not exceed")
    // A bad --flush-size does not reach the engine's check of --buffer against it.
    const badFlush = await inProcess(["bench", "--flush-size", "lots", "--buffer", "100"])
    expect(badFlush.err).toContain('--flush-size must be an integer ≥ 1 (got "lots")')
    expect(badFlush.err).not.toContain("--buffer")
    // Values that parsed are still checked together.
    const tooMany = await inProcess(["bench", "--rows", "3", "--producers", "5"])
    expect(tooMany.code).toBe(2)
    expect(tooMany.err).toContain("--producers (5) must not exceed --rows (3)")
  })

  it("the default table is unique per user and per process; --table chooses one", async () => {
    expect(defaultTable("pg", "alice", 4242)).toBe("batchflow_bench_alice_4242")
    expect(defaultTable("sqlite", "bob", 7)).toBe("batchflow_bench_bob_7")
    expect(defaultTable("redis", "alice", 4242)).toBe("bench_alice_4242")
    expect(userTag()).toMatch(/^[a-z0-9_]{1,24}$/)
    const spec = (flags: Partial<Flags>) => Effect.runPromise(Effect.either(toSpec({ ...noFlags, ...flags })))
    const sqlite = await spec({})
    const pg = await spec({ backend: "pg" })
    const redis = await spec({ backend: "redis" })
    const chosen = await spec({ backend: "pg", table: Option.some("my_bench") })
    expect(Either.getOrThrow(sqlite).table).toBe(`batchflow_bench_${userTag()}_${process.pid}`)
    expect(Either.getOrThrow(pg).table).toBe(`batchflow_bench_${userTag()}_${process.pid}`)
    expect(Either.getOrThrow(redis).table).toBe(`bench_${userTag()}_${process.pid}`)
    expect(Either.getOrThrow(chosen).table).toBe("my_bench")
    expect(Either.getOrThrow(pg).table).toMatch(/^[A-Za-z_][A-Za-z0-9_]{0,62}$/)
  })

  it(
    "PostgreSQL: two benches at once with the default table write to two tables, both intact, both dropped",
    async () => {
      const args = ["bench", "--backend", "pg", "--url", pgUrl, "--rows", "20000", "--warmup", "0"]
      const runs = await Promise.all([cli(args), cli(args)])
      const tables = runs.map((run) => /table (batchflow_bench_\w+)/.exec(run.stdout)?.[1])
      for (const run of runs) {
        expect(run.stderr).not.toContain("FAILED")
        expect(run.code).toBe(0)
        expect(run.stdout).toContain("integrity: OK")
      }
      expect(tables[0]).toMatch(new RegExp(`^batchflow_bench_${userTag()}_\\d+$`))
      expect(tables[1]).toMatch(new RegExp(`^batchflow_bench_${userTag()}_\\d+$`))
      expect(tables[0]).not.toBe(tables[1])
      expect(await tableExists(tables[0]!)).toBe(false)
      expect(await tableExists(tables[1]!)).toBe(false)
    },
    SLOW
  )

  /**
   * Starts a long PostgreSQL bench on `table` as a child process (the executable, as a user runs
   * it), sends SIGINT once the table exists (the run has started), and answers how it ended.
   */
  const interrupted = async (table: string, extra: ReadonlyArray<string> = []) => {
    await withPg((client) => client.query(`DROP TABLE IF EXISTS "${table}"`))
    const child = spawn(
      process.execPath,
      [
        "bin/effect-batchflow.js",
        "bench",
        "--backend",
        "pg",
        "--url",
        pgUrl,
        "--rows",
        "5000000",
        "--warmup",
        "0",
        "--table",
        table,
        ...extra
      ],
      { cwd: root, env: childEnv({}), stdio: ["ignore", "pipe", "pipe"] }
    )
    const exited = new Promise<{ code: number | null; signal: string | null }>((resolve) =>
      child.on("exit", (code, signal) => resolve({ code, signal }))
    )
    let stdout = ""
    let stderr = ""
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      stdout += chunk
    })
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => {
      stderr += chunk
    })
    try {
      let started = false
      for (let i = 0; i < 400 && !started && child.exitCode === null; i++) {
        await new Promise((resolve) => setTimeout(resolve, 50))
        started = await tableExists(table)
      }
      expect({ started, stderr }).toEqual({ started: true, stderr: expect.any(String) })
      child.kill("SIGINT")
      const timeout = new Promise<"timeout">((resolve) => setTimeout(() => resolve("timeout"), 20_000))
      const exit = await Promise.race([exited, timeout])
      return { exit, stdout, stderr }
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL")
    }
  }

  it(
    "Ctrl-C (SIGINT) during a run: exit 130 and the bench's table dropped",
    async () => {
      const table = "cli_test_pg_sigint"
      const run = await interrupted(table)
      expect(run.exit).toEqual({ code: 130, signal: null })
      expect(run.stderr).toContain("effect-batchflow bench: interrupted")
      // Interrupted during the run: no run finished, no summary.
      expect(run.stdout).toContain(`table ${table}`)
      expect(run.stdout).not.toContain("integrity")
      expect(await tableExists(table)).toBe(false)
    },
    SLOW
  )

  it(
    "Ctrl-C (SIGINT) with --keep: exit 130 and the table kept",
    async () => {
      const table = "cli_test_pg_sigint_keep"
      try {
        const run = await interrupted(table, ["--keep"])
        expect(run.exit).toEqual({ code: 130, signal: null })
        expect(run.stderr).toContain(`effect-batchflow bench: interrupted (--keep: ${table} kept)`)
        expect(await tableExists(table)).toBe(true)
      } finally {
        await withPg((client) => client.query(`DROP TABLE IF EXISTS "${table}"`))
      }
    },
    SLOW
  )
})
