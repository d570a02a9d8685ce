/**
 * The bench workloads of `../shared/design/BENCH.md`, as the CLI runs them: W1 (one table, every
 * backend) and W0 (the engine alone, `--backend noop`). The row generator, the settings a run uses,
 * and their defaults.
 *
 * @since 0.1.0
 */
import { userInfo } from "node:os"
import * as Duration from "effect/Duration"
import * as Schema from "effect/Schema"
import type * as BatchFlowConfig from "../BatchFlowConfig.js"

/**
 * Where the bench writes.
 *
 * @since 0.1.0
 * @category models
 */
export type BackendName = "sqlite" | "pg" | "mysql" | "redis" | "noop"

/**
 * @since 0.1.0
 * @category constants
 */
export const backendNames: ReadonlyArray<BackendName> = ["sqlite", "pg", "mysql", "redis", "noop"]

/**
 * The SQL conflict modes the bench can use (`Conflict.none`, `ignore`, `replace`, `update`).
 *
 * @since 0.1.0
 * @category models
 */
export type ConflictName = "none" | "ignore" | "replace" | "update"

/**
 * @since 0.1.0
 * @category constants
 */
export const conflictNames: ReadonlyArray<ConflictName> = ["none", "ignore", "replace", "update"]

/**
 * The PostgreSQL statement forms (`Postgres` option `pgForm`).
 *
 * @since 0.1.0
 * @category models
 */
export type PgFormName = "json" | "values" | "unnest"

/**
 * @since 0.1.0
 * @category constants
 */
export const pgForms: ReadonlyArray<PgFormName> = ["json", "values", "unnest"]

/**
 * One W1 row: `id` 1..N, `user_id = id % 1000`, `name = "user-" + id`, `amount = id * 0.5`, a fixed
 * `created_at`.
 *
 * @since 0.1.0
 * @category models
 */
export interface BenchRow {
  readonly id: number
  readonly user_id: number
  readonly name: string
  readonly amount: number
  readonly created_at: string
}

/**
 * 2024-01-01T00:00:00Z as every backend's TIMESTAMP takes it (MariaDB rejects a trailing `Z`).
 *
 * @since 0.1.0
 * @category constants
 */
export const CREATED_AT = "2024-01-01 00:00:00"

/**
 * @since 0.1.0
 * @category constructors
 */
export const makeRow = (id: number): BenchRow => ({
  id,
  user_id: id % 1000,
  name: `user-${id}`,
  amount: id * 0.5,
  created_at: CREATED_AT
})

/**
 * The row schema (the table's columns).
 *
 * @since 0.1.0
 * @category schemas
 */
export const BenchRowSchema: Schema.Schema<BenchRow> = Schema.Struct({
  id: Schema.Number,
  user_id: Schema.Number,
  name: Schema.String,
  amount: Schema.Number,
  created_at: Schema.String
})

/**
 * Everything one bench invocation does, resolved from the flags.
 *
 * @since 0.1.0
 * @category models
 */
export interface BenchSpec {
  readonly backend: BackendName
  /** Rows per measured run. */
  readonly rows: number
  /** Producer fibers; they take ids from one shared counter, one `submit` per row (or `submitAll`). */
  readonly producers: number
  readonly flushSize: number
  readonly flushInterval: Duration.Duration
  readonly concurrency: number
  readonly bufferSize: number
  /** SQL backends only. */
  readonly conflict: ConflictName
  /** PostgreSQL only: the statement form (`undefined`: the library's default). */
  readonly pgForm: PgFormName | undefined
  /** SQLite only: the flow writes through better-sqlite3 directly (`Sqlite` option `direct`). */
  readonly sqliteDirect: boolean
  /** MySQL/MariaDB only: the flow writes on the mysql2 pool's connections directly (`Mysql` option `direct`). */
  readonly mysqlDirect: boolean
  /** Connection URL (SQLite: a file path), or `undefined` for the default. */
  readonly url: string | undefined
  /** Measured runs per variant. */
  readonly runs: number
  /** Rows of the unmeasured warm-up pass of each variant (0: none). */
  readonly warmup: number
  /** Run the raw driver on the same workload and print the ratio. */
  readonly baseline: boolean
  /** Report files (`.json` or `.md`). */
  readonly reports: ReadonlyArray<string>
  /** Every `sampleEvery`-th row is written with `write` and its submit→commit latency recorded (0: none). */
  readonly sampleEvery: number
  /** Producers call `submitAll` with arrays of `flushSize` rows instead of one `submit` per row. */
  readonly submitAll: boolean
  /** SQL table name, or Redis key prefix (without the colon). */
  readonly table: string
  /** Keep the table / keys / SQLite file after the command instead of removing them. */
  readonly keep: boolean
  /** Prometheus port while the bench runs (`undefined`: no endpoint). */
  readonly metricsPort: number | undefined
  /**
   * `--semi-space`: re-run the whole measurement in one child Node process per value, started with
   * `--max-semi-space-size=<MiB>` (`null`: no flag, V8's default), and compare. Empty: run here.
   */
  readonly semiSpace: ReadonlyArray<number | null>
}

/**
 * The defaults of BENCH.md: W1 200,000 rows (W0 1,000,000), 4 producers, buffer 10,000, flushSize
 * 500, flushInterval 50 ms, concurrency 4, `Conflict.ignore`.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaults = {
  rowsW1: 200_000,
  rowsW0: 1_000_000,
  producers: 4,
  flushSize: 500,
  flushInterval: "50 millis",
  concurrency: 4,
  bufferSize: 10_000,
  conflict: "ignore" as ConflictName,
  runs: 1,
  sampleEvery: 1000,
  /** The default SQL table is `batchflow_bench_<user>_<pid>` (see `defaultTable`). */
  tablePrefix: "batchflow_bench",
  /** The default Redis key prefix is `bench_<user>_<pid>` (keys `bench_<user>_<pid>:<id>`). */
  redisPrefix: "bench"
} as const

/**
 * The OS user name as an identifier part: lower case, letters, digits and `_` only, at most 24
 * characters; `user` when there is none (no passwd entry and no `USER`).
 *
 * @since 0.1.0
 * @category utils
 */
export const userTag = (): string => {
  let name: string | undefined
  try {
    name = userInfo().username
  } catch {
    name = undefined
  }
  name ||= process.env.USER || process.env.LOGNAME || process.env.USERNAME || ""
  const tag = name
    .toLowerCase()
    .replace(/[^a-z0-9_]+/g, "_")
    .replace(/^_+|_+$/g, "")
    .slice(0, 24)
  return tag === "" ? "user" : tag
}

/**
 * The table (SQL) or key prefix (Redis) of a run when `--table` is not given: unique per user and
 * per process (`batchflow_bench_<user>_<pid>`, Redis `bench_<user>_<pid>`), so that two benches on
 * one server never write to, reset or drop each other's table.
 *
 * @since 0.1.0
 * @category utils
 */
export const defaultTable = (
  backend: BackendName,
  user: string = userTag(),
  pid: number = process.pid
): string => `${backend === "redis" ? defaults.redisPrefix : defaults.tablePrefix}_${user}_${pid}`

/**
 * The default connection URLs (loopback test servers), overridden by `--url` or the
 * `BATCHFLOW_PG_URL`, `BATCHFLOW_MYSQL_URL` and `BATCHFLOW_REDIS_URL` variables.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultUrls = {
  pg: "postgres://postgres@127.0.0.1:5432/test",
  mysql: "mysql://root@127.0.0.1:3306/test",
  redis: "redis://127.0.0.1:6379/13"
} as const

/**
 * The environment variable each server backend reads its URL from.
 *
 * @since 0.1.0
 * @category constants
 */
export const urlVariables = {
  pg: "BATCHFLOW_PG_URL",
  mysql: "BATCHFLOW_MYSQL_URL",
  redis: "BATCHFLOW_REDIS_URL"
} as const

/**
 * The flow configuration of a run: the spec's sizes, plus W1's retry (3 attempts, 20 ms base, 500 ms
 * max) and per-attempt timeout (5 s).
 *
 * @since 0.1.0
 * @category constructors
 */
export const flowOptions = (spec: BenchSpec): BatchFlowConfig.Options => ({
  bufferSize: spec.bufferSize,
  flushSize: spec.flushSize,
  flushInterval: spec.flushInterval,
  concurrency: spec.concurrency,
  retry: { maxAttempts: 3, backoffBase: "20 millis", maxBackoff: "500 millis" },
  timeout: "5 seconds",
  // With --metrics-port the flow records the BatchFlowMetrics, labelled database=<backend>.
  metrics: spec.metricsPort === undefined ? false : { database: spec.backend, instanceId: "bench" }
})

/**
 * The ids of producer `p` of `producers`: `[first, last]`, inclusive, 1-based; the shares differ by
 * at most one row.
 *
 * @since 0.1.0
 * @category utils
 */
export const shareOf = (rows: number, producers: number, p: number): readonly [number, number] => [
  Math.floor((p * rows) / producers) + 1,
  Math.floor(((p + 1) * rows) / producers)
]

/**
 * Parses a duration flag: `50`, `50ms`, `50 millis`, `0.5s`, `2 seconds`, `1m`.
 *
 * @since 0.1.0
 * @category utils
 */
export const parseDuration = (input: string): Duration.Duration | undefined => {
  const match = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(input)
  if (match === null) return undefined
  const value = Number(match[1])
  const unit = match[2]!.toLowerCase()
  if (
    unit === "" ||
    unit === "ms" ||
    unit === "milli" ||
    unit === "millis" ||
    unit.startsWith("millisecond")
  ) {
    return Duration.millis(value)
  }
  if (unit === "s" || unit === "sec" || unit === "secs" || unit.startsWith("second"))
    return Duration.seconds(value)
  if (unit === "m" || unit === "min" || unit === "mins" || unit.startsWith("minute"))
    return Duration.minutes(value)
  return undefined
}
