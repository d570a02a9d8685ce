/**
 * The SQL executor: one for every dialect, which it asks the `SqlClient` for. Per batch: plan
 * (dedupe, encode, split: see build.ts), count the dedupe, run the statements (several ones in one
 * transaction). Errors are classified by `sqlRule`.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { Connection } from "@effect/sql/SqlConnection"
import type { SqlError } from "@effect/sql/SqlError"
import type * as Config from "effect/Config"
import type * as ConfigError from "effect/ConfigError"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Metric from "effect/Metric"
import * as BatchExecutor from "../../BatchExecutor.js"
import * as BatchFlow from "../../BatchFlow.js"
import type * as BatchFlowConfig from "../../BatchFlowConfig.js"
import type { BatchFlowConfigError } from "../../BatchFlowError.js"
import * as Conflict from "../../Conflict.js"
import { dedupeRowsIn, dedupeRowsOut } from "../../Sql.js"
import * as Table from "../../Table.js"
import { reportOperation } from "../engine/observer.js"
import {
  buildOptions,
  type Dialect,
  fingerprintOf,
  type Plan,
  plan,
  type Statement,
  type StatementOptions
} from "./build.js"
import {
  ColumnLookupError,
  ColumnValueError,
  describeSqlError,
  NotATable,
  RowEncodeError,
  type SqlWriteError,
  UnsupportedDialect
} from "./errors.js"
import * as MysqlDirect from "./mysqlDirect.js"
import { sqlRule } from "./rules.js"
import * as SqliteDirect from "./sqliteDirect.js"
import { checkNumeric, mysqlNumericColumn, type NumericColumn, pgNumericColumn } from "./values.js"

/** @internal */
export const dialectOf = (sql: SqlClient.SqlClient): Dialect | string =>
  sql.onDialect({
    pg: () => "pg" as const,
    mysql: () => "mysql" as const,
    sqlite: () => "sqlite" as const,
    mssql: () => "mssql",
    clickhouse: () => "clickhouse"
  })

const isDialect = (d: string): d is Dialect => d === "pg" || d === "mysql" || d === "sqlite"

/**
 * How statements run on one client: outside a transaction (`conn` undefined: the client picks a
 * connection), or on the connection a transaction holds.
 */
interface Runner {
  readonly run: (
    statement: Statement,
    deadlineMillis: number,
    conn: Connection | undefined
  ) => Effect.Effect<unknown, SqlError>
  /**
   * Whether a single statement must run in a transaction to carry the deadline (PostgreSQL's
   * `SET LOCAL statement_timeout` only lasts for a transaction).
   */
  readonly deadlineNeedsTransaction: boolean
  /**
   * Whether a single statement runs on a connection reserved first. For mysql2: its pool's own
   * `query` takes a connection inside the call, so a failed connect (a server down behind a proxy
   * resets the handshake) would look like a connection lost under the statement, an unknown
   * outcome; reserved first, it is a failure to acquire, known not sent. And the wait for the
   * connection then counts against the statement's deadline.
   */
  readonly reserveSingle: boolean
  /** What opens the transaction: `BEGIN`, and for PostgreSQL its deadline too. */
  readonly begin: (deadlineMillis: number) => string
  /**
   * A single statement with its deadline as one text without parameters, when the dialect can send
   * it so (PostgreSQL's simple query protocol runs several statements in one round trip, as one
   * implicit transaction); `undefined` otherwise.
   */
  readonly oneTrip: (statement: Statement) => ((deadlineMillis: number) => string) | undefined
}

/** What the MySQL runner knows of its server, once detected (for the direct path, mysqlDirect.ts). */
interface MysqlServer {
  readonly prepared: boolean
  readonly mariadb: boolean
}

interface MysqlRunner extends Runner {
  /** The server's modes and kind; `undefined` until the first statement detected them. */
  readonly server: () => MysqlServer | undefined
  /** The query that reads them, and what its rows say (noted for the next statements). */
  readonly detect: MysqlDirect.Detect<MysqlServer>
  /** The statement's text as sent: on MariaDB with what is left of the deadline. */
  readonly textOf: (server: MysqlServer, statement: Statement, deadlineMillis: number) => string
}

/** Milliseconds left before `deadline` (an absolute `Date.now()` instant), at least 1; Infinity when none. */
const remaining = (deadline: number): number =>
  Number.isFinite(deadline) ? Math.max(1, Math.floor(deadline - Date.now())) : Number.POSITIVE_INFINITY

/**
 * PostgreSQL: the attempt's deadline is the transaction's `statement_timeout`, set with `SET LOCAL`
 * so that it never leaks to other users of the pooled connection (sent with `BEGIN`, or with the
 * statement itself, in one simple query: one round trip). A statement still running at the deadline
 * is cancelled by the server itself (SQLSTATE 57014) and rolled back: a known outcome that needs no
 * second connection (node-postgres' cancel does, and with pool size = concurrency there is none
 * free, so the statement would commit after the client gave up).
 */
const pgRunner = (sql: SqlClient.SqlClient): Runner => ({
  run: (statement, _deadline, conn) =>
    conn === undefined
      ? sql.unsafe(statement.sql, statement.params).raw
      : conn.executeRaw(statement.sql, statement.params),
  deadlineNeedsTransaction: true,
  reserveSingle: false,
  begin: (deadline) => {
    const ms = remaining(deadline)
    return Number.isFinite(ms) ? `BEGIN; SET LOCAL statement_timeout = ${ms}` : "BEGIN"
  },
  // The JSON and unnest forms have text parameters only, each cast (`$1::json`, `$2::bigint[]`):
  // inlined as literals, the deadline and the statement go in one round trip, as the statement alone
  // did before the deadline. (Names cannot hold `$`: Table.make checks them.) Several statements in
  // one simple query run as one implicit transaction: `SET LOCAL` lasts until its end, the whole
  // query commits when the last statement succeeds, and is rolled back when one fails (leaving the
  // session idle, not in a failed transaction), so neither BEGIN and COMMIT nor a ROLLBACK after an
  // error are needed: two statements fewer per batch than the explicit transaction, ~5 % more rows/s
  // in the flow in one sitting (docs/development/architecture.md).
  oneTrip: (statement) => {
    const params = statement.params
    if (params.length === 0 || !params.every((p) => typeof p === "string")) return undefined
    let casts = 0
    const insert = statement.sql.replace(/\$(\d+)::/g, (_, n: string) => {
      casts++
      return `${pgLiteral(params[Number(n) - 1] as string)}::`
    })
    if (casts !== params.length) return undefined
    return (deadline) => `SET LOCAL statement_timeout = ${remaining(deadline)}; ${insert}`
  }
})

/**
 * A PostgreSQL string literal: quotes doubled, and, when the text has a backslash, the `E''` form
 * with backslashes doubled, which reads the same whatever `standard_conforming_strings` is.
 */
const pgLiteral = (text: string): string => {
  const quoted = text.replaceAll("'", "''")
  return text.includes("\\") ? ` E'${quoted.replaceAll("\\", "\\\\")}'` : `'${quoted}'`
}

/**
 * MySQL statements go through mysql2's `query()` (client-side formatting): measured faster than
 * server-prepared `execute()`, and it does not leave a prepared statement per distinct batch size on
 * the server. mysql2 escapes quotes with backslashes, which is only safe while the server does not run
 * with `NO_BACKSLASH_ESCAPES`; under that mode we fall back to server-prepared statements.
 *
 * On MariaDB each statement carries the attempt's deadline as `SET STATEMENT max_statement_time=… FOR`:
 * a statement still running then is aborted by the server (errno 1969) and rolled back. MySQL has no
 * such limit for writes (`MAX_EXECUTION_TIME` is for SELECT only): there the engine's own deadline is
 * all there is, and an attempt it abandons has an unknown outcome.
 */
const mysqlRunner = (sql: SqlClient.SqlClient): MysqlRunner => {
  let server: MysqlServer | undefined
  const query = "SELECT @@GLOBAL.sql_mode AS g, @@SESSION.sql_mode AS s, VERSION() AS v"
  type ServerRow = { readonly g: string | null; readonly s: string | null; readonly v: string | null }
  const note = (rows: ReadonlyArray<ServerRow>): MysqlServer => {
    const modes = `${rows[0]?.g ?? ""},${rows[0]?.s ?? ""}`
    server = {
      prepared: modes.includes("NO_BACKSLASH_ESCAPES"),
      mariadb: (rows[0]?.v ?? "").includes("MariaDB")
    }
    return server
  }
  // On the statement's own connection when it has one: with a pool of one, asking the pool for
  // another while holding it would wait for ever.
  const detect = (conn: Connection | undefined) =>
    Effect.map(
      conn === undefined
        ? sql.unsafe<ServerRow>(query)
        : (conn.executeUnprepared(query, [], undefined) as Effect.Effect<ReadonlyArray<ServerRow>, SqlError>),
      note
    )
  const textOf = (known: MysqlServer, statement: Statement, deadline: number): string => {
    const ms = known.mariadb ? remaining(deadline) : Number.POSITIVE_INFINITY
    return Number.isFinite(ms)
      ? `SET STATEMENT max_statement_time=${(ms / 1000).toFixed(3)} FOR ${statement.sql}`
      : statement.sql
  }
  const runOn = (
    known: MysqlServer,
    statement: Statement,
    deadline: number,
    conn: Connection | undefined
  ): Effect.Effect<unknown, SqlError> => {
    const text = textOf(known, statement, deadline)
    if (conn !== undefined) {
      return known.prepared
        ? conn.executeRaw(text, statement.params)
        : conn.executeUnprepared(text, statement.params, undefined)
    }
    const query = sql.unsafe(text, statement.params)
    return known.prepared ? query.raw : query.unprepared
  }
  return {
    run: (statement, deadline, conn) =>
      server !== undefined
        ? runOn(server, statement, deadline, conn)
        : Effect.flatMap(detect(conn), (known) => runOn(known, statement, deadline, conn)),
    deadlineNeedsTransaction: false,
    reserveSingle: true,
    begin: () => "BEGIN",
    oneTrip: () => undefined,
    server: () => server,
    detect: { sql: query, read: (rows) => note(rows as ReadonlyArray<ServerRow>) },
    textOf
  }
}

/**
 * SQLite runs in-process and synchronously: a statement cannot outlive the attempt. Statements run on
 * the client's connection, reserved (the client's lock, as its transactions take it), not through
 * `sql.unsafe`, which opens a span with the statement's text and copies the parameters twice. The
 * parameters are handed over as one array (better-sqlite3 binds an array's elements), not spread as
 * 2,500 arguments; the client prepares each statement text once (its statement cache).
 */
const sqliteRunner = (sql: SqlClient.SqlClient): Runner => ({
  run: (statement, _deadline, conn) =>
    conn === undefined
      ? sql.unsafe(statement.sql, [statement.params]).raw
      : conn.executeRaw(statement.sql, [statement.params]),
  deadlineNeedsTransaction: false,
  reserveSingle: true,
  begin: () => "BEGIN",
  oneTrip: () => undefined
})

// ---------------------------------------------------------------- column types

/** A numeric column of a table and the row field it is written from. */
interface ColumnCheck {
  readonly field: string
  readonly column: NumericColumn
}

/**
 * The numeric column types of the tables a client writes, read from the server's catalog once per
 * table (and again after `catalogTtlMillis`, or after a write failed with a schema error), so that a
 * value the column would round or clamp fails as its row's `bad_value` instead of being stored
 * changed. A table the catalog does not know (not created yet) is not cached: its write goes out
 * unchecked and fails on the server as a missing table; the next batch reads the catalog again.
 */
interface Catalog {
  /** What is known of a table when read and fresh; `undefined` when the catalog must be read. */
  readonly cached: (table: Table.Any) => Known | undefined
  readonly lookup: (table: Table.Any) => Effect.Effect<Known, ColumnLookupError>
  readonly forget: (table: Table.Any) => void
}

/** What the catalog says of a table. */
interface Known {
  readonly checks: ReadonlyArray<ColumnCheck>
  /** PostgreSQL: each column's type without modifiers, in the table's column order (for `unnest`). */
  readonly pgTypes: ReadonlyArray<string> | undefined
}

/** What a catalog read finds: the numeric columns, and every column's base type (PostgreSQL). */
interface Found {
  readonly numeric: ReadonlyArray<NumericColumn>
  readonly types: ReadonlyMap<string, string> | undefined
}

/** How long a table's column types are trusted before they are read again. */
const catalogTtlMillis = 60_000

const none: ReadonlyArray<ColumnCheck> = []
const unknown: Known = { checks: none, pgTypes: undefined }

const makeCatalog = (
  /** The table's columns, `undefined` when the catalog has no column of it at all. */
  read: (table: Table.Any) => Effect.Effect<Found | undefined, SqlError>,
  caseInsensitive: boolean
): Catalog => {
  const entries = new WeakMap<Table.Any, { readonly known: Known; readonly at: number }>()
  const norm = caseInsensitive ? (name: string) => name.toLowerCase() : (name: string) => name
  return {
    cached: (table) => {
      const entry = entries.get(table)
      return entry !== undefined && Date.now() - entry.at < catalogTtlMillis ? entry.known : undefined
    },
    lookup: (table) =>
      Effect.map(
        Effect.mapError(read(table), (cause) => new ColumnLookupError({ table: table.name, cause })),
        (found) => {
          if (found === undefined) return unknown
          const byName = new Map(found.numeric.map((column) => [norm(column.name), column]))
          const checks: Array<ColumnCheck> = []
          for (const field of table.columns) {
            const column = byName.get(norm(field))
            if (column !== undefined) checks.push({ field, column })
          }
          const types = found.types
          const pgTypes = types === undefined ? [] : table.columns.map((field) => types.get(field))
          const known: Known = {
            checks: checks.length === 0 ? none : checks,
            pgTypes:
              types === undefined || pgTypes.some((type) => type === undefined)
                ? undefined
                : (pgTypes as ReadonlyArray<string>)
          }
          entries.set(table, { known, at: Date.now() })
          return known
        }
      ),
    forget: (table) => {
      entries.delete(table)
    }
  }
}

/** The first value of `rows` its column would not keep as it is, as the row's error. */
const firstBadValue = (
  table: Table.Any,
  checks: ReadonlyArray<ColumnCheck>,
  rows: ReadonlyArray<unknown>
): ColumnValueError | undefined => {
  for (const { field, column } of checks) {
    for (let i = 0; i < rows.length; i++) {
      const value = (rows[i] as Record<string, unknown>)[field]
      if (value === null || value === undefined) continue
      const problem = checkNumeric(column, value)
      if (problem !== undefined) {
        return new ColumnValueError({
          table: table.name,
          column: field,
          columnType: column.type,
          problem: problem.problem,
          detail: problem.detail
        })
      }
    }
  }
  return undefined
}

type MysqlColumnRow = {
  readonly t: string
  readonly c: string
  readonly d: string
  readonly ct: string
  readonly p: number | string | null
  readonly s: number | string | null
}

const mysqlColumnsQuery =
  "SELECT TABLE_NAME AS t, COLUMN_NAME AS c, DATA_TYPE AS d, COLUMN_TYPE AS ct, NUMERIC_PRECISION AS p, NUMERIC_SCALE AS s FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = COALESCE(?, DATABASE()) AND TABLE_NAME = ?"

/**
 * MySQL/MariaDB round a fraction written into an integer column (1.5 → 2, also as text '1.5'), a
 * DECIMAL's extra fractional digits (a note, not a warning: strict mode lets it pass), and clamp
 * out-of-range values outside strict mode: every integer type, BIT, YEAR and DECIMAL is checked.
 */
const mysqlCatalog = (sql: SqlClient.SqlClient): Catalog =>
  makeCatalog((table) => {
    const name = table.path[table.path.length - 1]!
    const schema = table.path.length > 1 ? table.path[table.path.length - 2]! : null
    return Effect.map(sql.unsafe<MysqlColumnRow>(mysqlColumnsQuery, [schema, name]), (rows) => {
      if (rows.length === 0) return undefined
      // information_schema compares names case-insensitively on some servers: prefer the exact table.
      const exact = rows.filter((row) => row.t === name)
      const own = exact.length > 0 ? exact : new Set(rows.map((row) => row.t)).size === 1 ? rows : []
      if (own.length === 0) return undefined
      const numeric = (u: number | string | null) => (u === null ? null : Number(u))
      return {
        numeric: own.flatMap((row) => {
          const column = mysqlNumericColumn(row.c, row.d, row.ct, numeric(row.p), numeric(row.s))
          return column === undefined ? [] : [column]
        }),
        types: undefined
      }
    })
  }, true)

const pgColumnsQuery =
  "SELECT a.attname AS c, format_type(a.atttypid, a.atttypmod) AS t, format_type(a.atttypid, NULL) AS b FROM pg_catalog.pg_attribute a WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped"

/**
 * PostgreSQL rejects a fraction for its integer types (22P02, a row-level `bad_value` the engine
 * isolates), but rounds a value to a `numeric(p, s)` column's scale: those columns are checked.
 */
const pgCatalog = (sql: SqlClient.SqlClient): Catalog =>
  makeCatalog((table) => {
    const name = table.path.map((part) => `"${part.replaceAll('"', '""')}"`).join(".")
    return Effect.map(
      sql.unsafe<{ readonly c: string; readonly t: string; readonly b: string }>(pgColumnsQuery, [name]),
      (rows) => {
        if (rows.length === 0) return undefined
        return {
          numeric: rows.flatMap((row) => {
            const column = pgNumericColumn(row.c, row.t)
            return column === undefined ? [] : [column]
          }),
          types: new Map(rows.map((row) => [row.c, row.b]))
        }
      }
    )
  }, false)

/**
 * Runs a statement sent as one text with its deadline (`Runner.oneTrip`) on a reserved connection:
 * reserved first, so a failed connect is a failure to acquire (known not sent), and the text made
 * once it is, so the wait for it counts against the deadline. The text is its own transaction:
 * after an error the session is idle again, with nothing to roll back.
 */
const inOneTrip = (sql: SqlClient.SqlClient, text: () => string): Effect.Effect<void, SqlError> =>
  Effect.scoped(
    Effect.flatMap(sql.reserve, (conn) =>
      Effect.asVoid(Effect.suspend(() => conn.executeUnprepared(text(), [], undefined)))
    )
  )

/**
 * `effect` on a reserved connection; after an error, ROLLBACK (its own failure changes nothing: a
 * session that ends rolls back too) and the first error is the one returned.
 */
const orRollBack = (
  conn: Connection,
  effect: Effect.Effect<unknown, SqlError>
): Effect.Effect<void, SqlError> =>
  effect.pipe(
    Effect.catchAll((error) =>
      Effect.zipRight(Effect.ignore(conn.executeUnprepared("ROLLBACK", [], undefined)), Effect.fail(error))
    ),
    Effect.asVoid
  )

/**
 * Runs statements in one transaction on a reserved connection. Not `sql.withTransaction`: it turns a
 * failed COMMIT or ROLLBACK into a defect, and a COMMIT whose connection is lost is exactly the case
 * whose outcome is unknown and must be classified, not thrown. Here the first error is the one
 * returned (a failed ROLLBACK afterwards changes nothing: the server rolls back a transaction whose
 * session ends), and the connection goes back to the pool when the scope closes.
 */
const inTransaction = (
  sql: SqlClient.SqlClient,
  /** Made once the connection is reserved, so the time spent waiting for it counts. */
  begin: () => string,
  body: (conn: Connection) => Effect.Effect<void, SqlError>
): Effect.Effect<void, SqlError> =>
  Effect.scoped(
    Effect.flatMap(sql.reserve, (conn) =>
      orRollBack(
        conn,
        Effect.zipRight(conn.executeUnprepared(begin(), [], undefined), body(conn)).pipe(
          Effect.zipRight(conn.executeUnprepared("COMMIT", [], undefined))
        )
      )
    )
  )

/**
 * SQLite's direct path: the statements run at once, synchronously, on the client's Database: one
 * effect per batch that completes without suspending. Unless a transaction is open on the
 * connection (the app's `sql.withTransaction`, which holds the client's lock across awaits): a
 * statement run now would join it, and be rolled back or committed with the app's work. Then the
 * batch goes the client's way, and waits for the lock like any other user of the client.
 */
const directWrite = (
  direct: SqliteDirect.DirectRunner,
  statements: ReadonlyArray<Statement>,
  throughClient: () => Effect.Effect<void, SqlError>
): Effect.Effect<void, SqlError> =>
  Effect.suspend(() => {
    if (direct.inTransaction()) return throughClient()
    const error = direct.run(statements)
    return error === undefined ? Effect.void : Effect.fail(error)
  })

/**
 * MySQL's direct path: the batch on a connection of the client's pool (mysqlDirect.ts), with the
 * statement texts the client path sends. The server's modes and kind are read first, on the batch's
 * connection, if no statement has read them yet (as the client path does).
 */
const mysqlDirectWrite = (
  pool: MysqlDirect.RawPool,
  runner: MysqlRunner,
  statements: ReadonlyArray<Statement>,
  deadline: number
): Effect.Effect<void, SqlError> =>
  Effect.suspend(() =>
    MysqlDirect.run(pool, runner.server(), runner.detect, (server) =>
      statements.map((statement) => ({
        text: () => runner.textOf(server, statement, deadline),
        params: statement.params
      }))
    )
  )

/**
 * Builds the executor for the client in context. `expected` restricts the dialect (for the
 * per-database layers).
 *
 * @internal
 */
export const make = (
  options: StatementOptions = {},
  expected?: Dialect
): Effect.Effect<BatchExecutor.BatchExecutor, UnsupportedDialect, SqlClient.SqlClient> =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    const dialect = dialectOf(sql)
    if (!isDialect(dialect) || (expected !== undefined && dialect !== expected)) {
      return yield* new UnsupportedDialect({ dialect, expected: expected ?? "pg, mysql or sqlite" })
    }
    const opts = buildOptions(dialect, options)
    const mysql = dialect === "mysql" ? mysqlRunner(sql) : undefined
    const runner = mysql ?? (dialect === "pg" ? pgRunner(sql) : sqliteRunner(sql))
    const counters = new Map<string, readonly [typeof dedupeRowsIn, typeof dedupeRowsOut]>()
    const countersOf = (table: string) => {
      let found = counters.get(table)
      if (found === undefined) {
        found = [
          Metric.tagged(dedupeRowsIn, "target", table),
          Metric.tagged(dedupeRowsOut, "target", table)
        ] as const
        counters.set(table, found)
      }
      return found
    }
    const catalog = dialect === "mysql" ? mysqlCatalog(sql) : dialect === "pg" ? pgCatalog(sql) : undefined
    // SQLite with `direct`: statements on the client's better-sqlite3 Database (sqliteDirect.ts).
    let direct: SqliteDirect.DirectRunner | undefined
    if (dialect === "sqlite" && options.direct === true) {
      const found = yield* SqliteDirect.databaseOf(sql)
      if (found._tag === "Found") {
        direct = SqliteDirect.runner(found.db)
      } else {
        yield* Effect.logWarning(
          `effect-batchflow: the SQLite direct path is not available (${found.reason}); writing through the client`
        )
      }
    }
    // MySQL/MariaDB, unless `direct: false`: each batch on a connection of the client's mysql2 pool
    // (mysqlDirect.ts). Asked for explicitly, a path that cannot be found is a warning.
    let pool: MysqlDirect.RawPool | undefined
    if (mysql !== undefined && options.direct !== false) {
      const found = yield* MysqlDirect.poolOf(sql)
      if (found._tag === "Found") {
        pool = found.pool
      } else {
        const message = `effect-batchflow: the MySQL direct path is not available (${found.reason}); writing through the client`
        yield* options.direct === true ? Effect.logWarning(message) : Effect.logDebug(message)
      }
    }
    type Failure = SqlWriteError | NotATable | RowEncodeError | ColumnValueError | ColumnLookupError
    const execute = (
      target: Parameters<BatchExecutor.BatchExecutor["execute"]>[0],
      rows: ReadonlyArray<unknown>,
      attempt?: BatchExecutor.Attempt
    ) =>
      Effect.suspend((): Effect.Effect<void, Failure> => {
        // The server gets what is left of the attempt's time when each statement starts, so that it
        // ends the statement by the engine's own deadline (time spent waiting for a connection counts).
        const timeoutMillis = attempt?.timeoutMillis ?? Number.POSITIVE_INFINITY
        const deadline = Number.isFinite(timeoutMillis)
          ? Date.now() + timeoutMillis
          : Number.POSITIVE_INFINITY
        if (!Table.isTable(target)) return Effect.fail(new NotATable({ target: target.name }))
        if (catalog === undefined) return writeBatch(target, rows, deadline, unknown)
        const known = catalog.cached(target)
        return known !== undefined
          ? writeBatch(target, rows, deadline, known)
          : Effect.flatMap(catalog.lookup(target), (read) => writeBatch(target, rows, deadline, read))
      })
    const writeBatch = (
      target: Table.Any,
      rows: ReadonlyArray<unknown>,
      deadline: number,
      known: Known
    ): Effect.Effect<void, Failure> => {
      const checks = known.checks
      let planned: Plan
      try {
        planned = plan(
          dialect,
          target,
          rows,
          opts.pgForm === "unnest" && known.pgTypes !== undefined ? { ...opts, pgTypes: known.pgTypes } : opts
        )
      } catch (error) {
        if (error instanceof RowEncodeError) return Effect.fail(error)
        throw error
      }
      if (checks.length > 0) {
        const bad = firstBadValue(target, checks, planned.rows)
        if (bad !== undefined) return Effect.fail(bad)
      }
      const [inCounter, outCounter] = countersOf(target.name)
      const statements = planned.statements
      const transaction =
        statements.length > 1 || (runner.deadlineNeedsTransaction && Number.isFinite(deadline))
      // One statement with a deadline: a single round trip where the dialect can send it so.
      const oneTrip =
        transaction && statements.length === 1 && Number.isFinite(deadline)
          ? runner.oneTrip(statements[0]!)
          : undefined
      // The client's path: a transaction, or the connection reserved (the client's lock).
      const throughClient = (): Effect.Effect<void, SqlError> =>
        oneTrip !== undefined
          ? inOneTrip(sql, () => oneTrip(deadline))
          : transaction
            ? inTransaction(
                sql,
                () => runner.begin(deadline),
                (conn) =>
                  Effect.forEach(statements, (statement) => runner.run(statement, deadline, conn), {
                    discard: true
                  })
              )
            : runner.reserveSingle
              ? Effect.scoped(
                  Effect.flatMap(sql.reserve, (conn) =>
                    Effect.asVoid(runner.run(statements[0]!, deadline, conn))
                  )
                )
              : Effect.suspend(() => Effect.asVoid(runner.run(statements[0]!, deadline, undefined)))
      const write = Effect.mapError(
        direct !== undefined
          ? directWrite(direct, statements, throughClient)
          : pool !== undefined
            ? mysqlDirectWrite(pool, mysql!, statements, deadline)
            : throughClient(),
        (error) => {
          const described = describeSqlError(
            error,
            target.name,
            planned.dedupe.rowsOut,
            fingerprintOf(dialect, target, opts.pgForm)
          )
          // The table may have changed (altered, dropped, created anew): read its columns again.
          if (catalog !== undefined && sqlRule(described)?.reason === "schema") catalog.forget(target)
          return described
        }
      )
      const gone = planned.dedupe.rowsIn - planned.dedupe.rowsOut
      const ignore = target.conflict._tag === "Ignore"
      const report = reportOperation({
        target: target.name,
        backend: "sql",
        operation: target.conflict._tag === "None" ? "insert" : "upsert",
        inputRows: planned.dedupe.rowsIn,
        outputRows: planned.dedupe.rowsOut,
        commands: statements.length,
        args: statements.reduce((n, statement) => n + statement.params.length, 0),
        dedupe: {
          strategy: Conflict.mode(target.conflict),
          deduplicated: ignore ? gone : 0,
          merged: ignore ? 0 : gone
        }
      })
      // Counted once the batch is committed, so retries and failures do not inflate the counts.
      return Effect.zipLeft(
        Effect.zipRight(report, write),
        Effect.zipRight(
          Metric.incrementBy(inCounter, planned.dedupe.rowsIn),
          Metric.incrementBy(outCounter, planned.dedupe.rowsOut)
        )
      )
    }
    return BatchExecutor.make(execute, { rules: [sqlRule] })
  })

/** @internal The SQL executor of a flow: it writes every `Table`. */
export const executor = (
  options: StatementOptions,
  expected: Dialect
): BatchExecutor.Executor<UnsupportedDialect, SqlClient.SqlClient> =>
  BatchExecutor.makeExecutor({
    name: expected === "pg" ? "postgres" : expected,
    accepts: Table.isTable,
    make: () => make(options, expected)
  })

/** @internal */
export const layerExecutor = (
  options: StatementOptions,
  expected: Dialect
): Layer.Layer<BatchExecutor.BatchExecutor, UnsupportedDialect, SqlClient.SqlClient> =>
  Layer.effect(BatchExecutor.BatchExecutor, make(options, expected))

/** Flow options and statement options in one record, as the dialect layers take them. @internal */
export interface LayerOptions extends BatchFlowConfig.Options, StatementOptions {}

/** @internal */
export const layer = (
  options: LayerOptions,
  expected: Dialect
): Layer.Layer<BatchFlow.BatchFlow, BatchFlowConfigError | UnsupportedDialect, SqlClient.SqlClient> => {
  const { maxParams, maxStatementBytes, pgForm, direct, ...flow } = options
  return BatchFlow.layer({
    ...flow,
    executors: [executor({ maxParams, maxStatementBytes, pgForm, direct }, expected)]
  })
}

/** @internal */
export const layerConfig = (
  statement: StatementOptions,
  config: Config.Config<BatchFlowConfig.Options>,
  expected: Dialect
): Layer.Layer<
  BatchFlow.BatchFlow,
  BatchFlowConfigError | ConfigError.ConfigError | UnsupportedDialect,
  SqlClient.SqlClient
> => BatchFlow.layerConfig({ executors: [executor(statement, expected)] }, config)
