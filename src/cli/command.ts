/**
 * The command line: `effect-batchflow bench [flags]`, built with @effect/cli. Flags are parsed by
 * @effect/cli (types, choices, unknown flags), then checked together here (ranges, combinations,
 * the flow configuration) before anything connects; a bad flag prints what is wrong and exits 2.
 *
 * @since 0.1.0
 */
import { existsSync, statSync } from "node:fs"
import { dirname, resolve } from "node:path"
import * as Command from "@effect/cli/Command"
import * as Options from "@effect/cli/Options"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Option from "effect/Option"
import * as BatchFlowConfig from "../BatchFlowConfig.js"
import * as Bench from "./bench.js"
import {
  type BackendName,
  type BenchSpec,
  backendNames,
  conflictNames,
  defaults,
  defaultTable,
  defaultUrls,
  flowOptions,
  parseDuration,
  pgForms,
  urlVariables
} from "./workload.js"

/**
 * Integers are parsed by `toSpec`, so that a bad value is reported with the flag's name
 * (`Options.integer`'s own error does not name it). The help shows the pseudo-name `integer` and the
 * flag's own description only: `main` drops the type's generic sentence ("A user-defined piece of
 * text.") that @effect/cli puts before every option's description.
 */
const integer = (name: string) => Options.text(name).pipe(Options.withPseudoName("integer"))

const flags = {
  backend: Options.text("backend").pipe(
    Options.withPseudoName(backendNames.join(" | ")),
    Options.withDefault("sqlite"),
    Options.withDescription(
      "Where to write: sqlite (default: an embedded file in a temporary folder, no server), pg, mysql (MySQL/MariaDB), redis, or noop (W0: the engine alone, no database)."
    )
  ),
  rows: integer("rows").pipe(
    Options.optional,
    Options.withDescription(
      `Rows per measured run (default ${defaults.rowsW1.toLocaleString("en")}; ${defaults.rowsW0.toLocaleString("en")} with --backend noop).`
    )
  ),
  producers: integer("producers").pipe(
    Options.withDefault(String(defaults.producers)),
    Options.withDescription(
      `Producer fibers, taking ids from one shared counter and submitting one row at a time. Default ${defaults.producers}.`
    )
  ),
  flushSize: integer("flush-size").pipe(
    Options.withDefault(String(defaults.flushSize)),
    Options.withDescription(
      `Rows per batch (flushSize); the baseline uses the same batch size. Default ${defaults.flushSize}.`
    )
  ),
  flushInterval: Options.text("flush-interval").pipe(
    Options.withPseudoName("duration"),
    Options.withDefault("50ms"),
    Options.withDescription(
      "Longest wait of a partial batch (flushInterval): 50ms, 100 millis, 1s … Default 50ms."
    )
  ),
  concurrency: integer("concurrency").pipe(
    Options.withDefault(String(defaults.concurrency)),
    Options.withDescription(
      `Executor calls at once (and connections in the pool); the baseline keeps as many batches in flight. Default ${defaults.concurrency}.`
    )
  ),
  buffer: integer("buffer").pipe(
    Options.withDefault(String(defaults.bufferSize)),
    Options.withDescription(
      `Rows buffered before submit waits (bufferSize); at least --flush-size. Default ${defaults.bufferSize.toLocaleString("en")}.`
    )
  ),
  conflict: Options.text("conflict").pipe(
    Options.withPseudoName(conflictNames.join(" | ")),
    Options.optional,
    Options.withDescription(
      "SQL backends: what a key collision does (none, ignore, replace, update). Default ignore (ON CONFLICT DO NOTHING / INSERT IGNORE / INSERT OR IGNORE)."
    )
  ),
  pgForm: Options.text("pg-form").pipe(
    Options.withPseudoName("json | values | unnest"),
    Options.optional,
    Options.withDescription(
      "PostgreSQL: the statement form (Postgres pgForm): json (one JSON parameter, the default), values (a VALUES list) or unnest (one array literal per column)."
    )
  ),
  url: Options.text("url").pipe(
    Options.withPseudoName("url"),
    Options.optional,
    Options.withDescription(
      `Connection URL. Defaults: pg ${urlVariables.pg} or ${defaultUrls.pg}; mysql ${urlVariables.mysql} or ${defaultUrls.mysql}; redis ${urlVariables.redis} or ${defaultUrls.redis}. For sqlite, a file path instead of the temporary file.`
    )
  ),
  runs: integer("runs").pipe(
    Options.withDefault(String(defaults.runs)),
    Options.withDescription(
      "Measured runs per variant; with --baseline they are interleaved and ratios paired by run. Default 1."
    )
  ),
  warmup: integer("warmup").pipe(
    Options.optional,
    Options.withDescription(
      "Rows of an unmeasured warm-up run of each variant (default: as many as --rows; 0 for none). The JIT compiles the engine's per-batch code after some thousand batches: with a shorter warm-up, BatchFlow's first measured runs are slower than its later ones."
    )
  ),
  baseline: Options.boolean("baseline").pipe(
    Options.withDescription(
      "Also run the raw driver on the same rows (same batch size, same number in flight) in the same process, and print BatchFlow's ratio to it."
    )
  ),
  report: Options.text("report").pipe(
    Options.withPseudoName("file"),
    Options.repeated,
    Options.withDescription(
      "Write the figures to a file: out.json (JSON) or out.md (Markdown). May be repeated."
    )
  ),
  sampleEvery: integer("sample-every").pipe(
    Options.withDefault(String(defaults.sampleEvery)),
    Options.withDescription(
      `Write every n-th row with \`write\` and record its submit→commit latency (0: no latency sample). Default ${defaults.sampleEvery}.`
    )
  ),
  submitAll: Options.boolean("submit-all").pipe(
    Options.withDescription(
      "Producers call submitAll with arrays of --flush-size rows instead of one submit per row."
    )
  ),
  table: Options.text("table").pipe(
    Options.withPseudoName("name"),
    Options.optional,
    Options.withDescription(
      `The bench's own table (SQL; dropped and recreated before every run, dropped at the end unless --keep), or key prefix (Redis; keys <prefix>:<id>). Default ${defaults.tablePrefix}_<user>_<pid> (Redis ${defaults.redisPrefix}_<user>_<pid>): the OS user and the process id, so that two benches on one server never touch each other's table. Never name a table of your own.`
    )
  ),
  sqliteDirect: Options.boolean("sqlite-direct").pipe(
    Options.withDescription(
      "SQLite: the flow writes through better-sqlite3 directly (Sqlite option direct: true) instead of through the SqliteClient's statements."
    )
  ),
  mysqlClient: Options.boolean("mysql-client").pipe(
    Options.withDescription(
      "MySQL/MariaDB: the flow sends every statement through the MysqlClient (Mysql option direct: false) instead of on the mysql2 pool's connections directly (the default)."
    )
  ),

  keep: Options.boolean("keep").pipe(
    Options.withDescription("Keep the table, keys or SQLite file after the bench (default: removed).")
  ),
  semiSpace: Options.text("semi-space").pipe(
    Options.withPseudoName("MiB[,MiB…]"),
    Options.optional,
    Options.withDescription(
      "Re-run the whole measurement in a child node process per value, started with --max-semi-space-size=<MiB> (V8's young generation; 'default': no flag, 16 MiB on 64-bit Node 20), e.g. --semi-space default,32,64, and print Node CPU µs/row, rows/s and peak RSS side by side. Without it, the report names the semi-space in effect (node flag or NODE_OPTIONS)."
    )
  ),
  metricsPort: integer("metrics-port").pipe(
    Options.optional,
    Options.withDescription(
      "Serve Prometheus metrics on http://127.0.0.1:<port>/metrics while the bench runs (needs the optional OpenTelemetry packages)."
    )
  )
}

/**
 * The parsed flags, before the checks.
 *
 * @since 0.1.0
 * @category models
 */
export interface Flags {
  readonly backend: string
  readonly rows: Option.Option<string>
  readonly producers: string
  readonly flushSize: string
  readonly flushInterval: string
  readonly concurrency: string
  readonly buffer: string
  readonly conflict: Option.Option<string>
  readonly pgForm: Option.Option<string>
  readonly sqliteDirect: boolean
  readonly mysqlClient: boolean
  readonly url: Option.Option<string>
  readonly runs: string
  readonly warmup: Option.Option<string>
  readonly baseline: boolean
  readonly report: ReadonlyArray<string>
  readonly sampleEvery: string
  readonly submitAll: boolean
  readonly table: Option.Option<string>
  readonly keep: boolean
  readonly metricsPort: Option.Option<string>
  readonly semiSpace: Option.Option<string>
}

const configFlag: Record<string, string> = {
  bufferSize: "--buffer",
  flushSize: "--flush-size",
  flushInterval: "--flush-interval",
  concurrency: "--concurrency"
}

/**
 * Checks the flags together and resolves the spec, or lists every problem (one line each).
 *
 * @since 0.1.0
 * @category parsing
 */
export const toSpec = (flags: Flags): Effect.Effect<BenchSpec, ReadonlyArray<string>> =>
  Effect.gen(function* () {
    const problems: Array<string> = []
    /** The flag's value, or `undefined` (and a problem) when it is not an integer in range. */
    const int = (
      flag: string,
      text: string,
      min: number,
      max = Number.MAX_SAFE_INTEGER
    ): number | undefined => {
      const value = /^\s*\d+\s*$/.test(text) ? Number(text) : Number.NaN
      if (!(Number.isSafeInteger(value) && value >= min && value <= max)) {
        problems.push(
          `${flag} must be an integer ${max === Number.MAX_SAFE_INTEGER ? `≥ ${min}` : `from ${min} to ${max}`} (got ${JSON.stringify(text)})`
        )
        return undefined
      }
      return value
    }
    const backend = backendNames.find((b) => b === flags.backend.trim().toLowerCase())
    if (backend === undefined) {
      problems.push(
        `--backend must be one of ${backendNames.join(", ")} (got ${JSON.stringify(flags.backend)})`
      )
    }
    const noop = backend === "noop"
    const conflictText = Option.getOrUndefined(flags.conflict)
    const conflict =
      conflictText === undefined
        ? defaults.conflict
        : conflictNames.find((c) => c === conflictText.trim().toLowerCase())
    if (conflict === undefined) {
      problems.push(
        `--conflict must be one of ${conflictNames.join(", ")} (got ${JSON.stringify(conflictText)})`
      )
    }
    const rows = Option.match(flags.rows, {
      onNone: () => (noop ? defaults.rowsW0 : defaults.rowsW1),
      onSome: (text) => int("--rows", text, 1)
    })
    const producers = int("--producers", flags.producers, 1)
    const flushSize = int("--flush-size", flags.flushSize, 1)
    const concurrency = int("--concurrency", flags.concurrency, 1)
    const bufferSize = int("--buffer", flags.buffer, 1)
    const runs = int("--runs", flags.runs, 1)
    const sampleEvery = int("--sample-every", flags.sampleEvery, 0)
    const warmup = Option.match(flags.warmup, {
      onNone: () => rows,
      onSome: (text) => int("--warmup", text, 0)
    })
    const metricsPort = Option.match(flags.metricsPort, {
      onNone: () => undefined,
      onSome: (text) => int("--metrics-port", text, 0, 65_535)
    })
    const semiSpace = Option.match(flags.semiSpace, {
      onNone: (): ReadonlyArray<number | null> => [],
      onSome: (text) => {
        const values = text.split(",").map((part) => part.trim().toLowerCase())
        const parsed = values.map((part) =>
          part === "default" ? null : /^\d+$/.test(part) ? Number(part) : Number.NaN
        )
        if (
          values.length === 0 ||
          parsed.some((v) => v !== null && !(Number.isSafeInteger(v) && v >= 1 && v <= 1024))
        ) {
          problems.push(
            `--semi-space must be a comma-separated list of MiB from 1 to 1024 or 'default', e.g. default,32,64 (got ${JSON.stringify(text)})`
          )
          return undefined
        }
        return parsed
      }
    })
    if (semiSpace !== undefined && semiSpace.length > 0 && Option.isSome(flags.metricsPort)) {
      problems.push("--metrics-port does not apply with --semi-space (the runs happen in child processes)")
    }
    // Checks across flags only compare values that parsed: a bad flag is reported once, by itself.
    if (producers !== undefined && rows !== undefined && producers > rows) {
      problems.push(`--producers (${producers}) must not exceed --rows (${rows})`)
    }
    const flushInterval = parseDuration(flags.flushInterval)
    if (flushInterval === undefined || Duration.toMillis(flushInterval) <= 0) {
      problems.push(
        `--flush-interval must be a duration > 0 such as 50ms, 100 millis or 1s (got ${JSON.stringify(flags.flushInterval)})`
      )
    }
    const pgFormText = Option.getOrUndefined(flags.pgForm)
    const pgForm =
      pgFormText === undefined ? undefined : pgForms.find((f) => f === pgFormText.trim().toLowerCase())
    if (pgFormText !== undefined && pgForm === undefined) {
      problems.push(`--pg-form must be one of ${pgForms.join(", ")} (got ${JSON.stringify(pgFormText)})`)
    }
    if (pgFormText !== undefined && backend !== undefined && backend !== "pg") {
      problems.push(`--pg-form applies to --backend pg, not to ${backend}`)
    }
    if (flags.sqliteDirect && backend !== undefined && backend !== "sqlite") {
      problems.push(`--sqlite-direct applies to --backend sqlite, not to ${backend}`)
    }
    if (flags.mysqlClient && backend !== undefined && backend !== "mysql") {
      problems.push(`--mysql-client applies to --backend mysql, not to ${backend}`)
    }
    if (conflictText !== undefined && (backend === "redis" || backend === "noop")) {
      problems.push(`--conflict applies to the SQL backends (sqlite, pg, mysql), not to ${backend}`)
    }
    const url = Option.getOrUndefined(flags.url)
    if (url !== undefined) {
      const schemes: Partial<Record<BackendName, ReadonlyArray<string>>> = {
        pg: ["postgres:", "postgresql:"],
        mysql: ["mysql:"],
        redis: ["redis:", "rediss:"]
      }
      const allowed = backend === undefined ? [] : schemes[backend]
      if (noop) problems.push("--url does not apply to --backend noop")
      else if (backend === undefined) {
        // reported above
      } else if (allowed !== undefined) {
        let protocol = ""
        try {
          protocol = new URL(url).protocol
        } catch {
          protocol = ""
        }
        if (!allowed.includes(protocol)) {
          problems.push(
            `--url for ${backend} must start with ${allowed.map((s) => `${s}//`).join(" or ")} (got ${JSON.stringify(url)})`
          )
        }
      } else if (url === "" || (existsSync(url) && statSync(url).isDirectory())) {
        problems.push(`--url for sqlite must be a file path (got ${JSON.stringify(url)})`)
      }
    }
    const table = Option.getOrElse(flags.table, () => defaultTable(backend ?? "sqlite"))
    if (!/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(table)) {
      problems.push(
        `--table must be a plain identifier: a letter or _, then letters, digits or _ (got ${JSON.stringify(table)})`
      )
    }
    for (const path of flags.report) {
      const lower = path.toLowerCase()
      if (!lower.endsWith(".json") && !lower.endsWith(".md")) {
        problems.push(`--report must name a .json or .md file (got ${JSON.stringify(path)})`)
      } else if (!existsSync(dirname(resolve(path)))) {
        problems.push(`--report ${path}: the folder ${dirname(resolve(path))} does not exist`)
      }
    }
    if (
      problems.length > 0 ||
      backend === undefined ||
      conflict === undefined ||
      rows === undefined ||
      producers === undefined ||
      flushSize === undefined ||
      flushInterval === undefined ||
      concurrency === undefined ||
      bufferSize === undefined ||
      runs === undefined ||
      sampleEvery === undefined ||
      warmup === undefined ||
      semiSpace === undefined
    ) {
      return yield* Effect.fail(problems)
    }
    const spec: BenchSpec = {
      backend,
      rows,
      producers,
      flushSize,
      flushInterval,
      concurrency,
      bufferSize,
      conflict,
      pgForm,
      sqliteDirect: flags.sqliteDirect,
      mysqlDirect: !flags.mysqlClient,
      url,
      runs,
      warmup,
      baseline: flags.baseline,
      reports: flags.report,
      sampleEvery,
      submitAll: flags.submitAll,
      table,
      keep: flags.keep,
      metricsPort,
      semiSpace
    }
    // The engine's own checks (e.g. buffer ≥ flushSize), named by flag.
    const checked = yield* Effect.either(BatchFlowConfig.make(flowOptions(spec)))
    if (checked._tag === "Left") {
      const e = checked.left
      return yield* Effect.fail([`${configFlag[e.field] ?? e.field} must be ${e.expected} (got ${e.value})`])
    }
    return spec
  })

/**
 * The `bench` command. `onExit` receives the exit code: 0 (all runs intact), 1 (a run failed its
 * integrity check, a row failed, or the backend could not be reached) or 2 (bad flags).
 *
 * @since 0.1.0
 * @category commands
 */
export const bench = (io: Bench.Io, onExit: (code: number) => void) =>
  Command.make("bench", flags, (parsed) =>
    Effect.gen(function* () {
      const checked = yield* Effect.either(toSpec(parsed))
      if (checked._tag === "Left") {
        io.err(`effect-batchflow bench: invalid flags:\n${checked.left.map((p) => `  ${p}`).join("\n")}`)
        io.err("Run `effect-batchflow bench --help` for every flag and its default.")
        return onExit(2)
      }
      const tamper = Bench.parseTamper(process.env[Bench.TAMPER_VARIABLE])
      if (tamper === "invalid") {
        io.err(`effect-batchflow bench: ${Bench.TAMPER_VARIABLE} must be delete:<rows> or corrupt:<rows>`)
        return onExit(2)
      }
      onExit(yield* Bench.run(checked.right, io, tamper))
    })
  ).pipe(
    Command.withDescription(
      `Runs the W1 workload (one table, per-row submit from several producers) on a backend and reports rows/s, submit→commit latency, peak RSS, retries, failures and an integrity check; with --baseline, the raw driver on the same rows and the ratio. --backend noop runs W0 (the engine alone). It writes only to its own table (--table, default ${defaults.tablePrefix}_<user>_<pid>), which it drops at the end, also when interrupted (Ctrl-C), unless --keep.`
    )
  )
