/**
 * The bench's default backend: an embedded SQLite file (WAL, synchronous=NORMAL) in a temporary
 * folder, no server needed. BatchFlow writes through `effect-batchflow/Sqlite`; the baseline is
 * better-sqlite3 on the same file with one multi-row `INSERT` per batch.
 *
 * @since 0.1.0
 */
import { mkdtempSync, rmSync } from "node:fs"
import { createRequire } from "node:module"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as SqlClient from "@effect/sql/SqlClient"
import { SqliteClient } from "@effect/sql-sqlite-node"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Sqlite from "../Sqlite.js"
import { BackendError, type MakeHarness, messageOf } from "./harness.js"
import { type Baseline, inBatches } from "./raw.js"
import * as SqlHarness from "./sqlHarness.js"
import { type BenchSpec, flowOptions } from "./workload.js"

/** The little of better-sqlite3 the baseline uses (the package ships no types). */
interface RawStatement {
  readonly run: (params: ReadonlyArray<unknown>) => unknown
}
interface RawDatabase {
  readonly pragma: (source: string) => unknown
  readonly prepare: (source: string) => RawStatement
  readonly transaction: (body: () => void) => () => void
  readonly close: () => unknown
}
type RawDatabaseConstructor = new (filename: string) => RawDatabase

/** SQLite's default `SQLITE_MAX_VARIABLE_NUMBER`. */
const MAX_PARAMS = 32_766
const COLUMNS = 5

const quote = (identifier: string) => `"${identifier}"`

const rawBaseline = (spec: BenchSpec, db: RawDatabase): Baseline => {
  const verb =
    spec.conflict === "ignore"
      ? "INSERT OR IGNORE"
      : spec.conflict === "replace"
        ? "INSERT OR REPLACE"
        : "INSERT"
  const tail = spec.conflict === "update" ? SqlHarness.onConflict("update", quote, "excluded") : ""
  const statements = new Map<number, RawStatement>()
  const statement = (rows: number) => {
    let found = statements.get(rows)
    if (found === undefined) {
      const tuples = Array.from({ length: rows }, () => "(?, ?, ?, ?, ?)").join(", ")
      found = db.prepare(
        `${verb} INTO ${quote(spec.table)} (${SqlHarness.allColumns.map(quote).join(", ")}) VALUES ${tuples}${tail}`
      )
      statements.set(rows, found)
    }
    return found
  }
  const perStatement = Math.floor(MAX_PARAMS / COLUMNS)
  const writeRange = (first: number, last: number) => {
    statement(last - first + 1).run(SqlHarness.flatParams(first, last))
  }
  return {
    name: "raw better-sqlite3",
    description: `better-sqlite3 on the same file, one multi-row ${verb} per batch of ${spec.flushSize} (in a transaction when a batch exceeds ${MAX_PARAMS} parameters)`,
    run: (rows, counter) => {
      statements.clear()
      return inBatches(rows, spec.flushSize, spec.concurrency, counter, async (first, last) => {
        if (last - first + 1 <= perStatement) return writeRange(first, last)
        db.transaction(() => {
          for (let from = first; from <= last; from += perStatement) {
            writeRange(from, Math.min(last, from + perStatement - 1))
          }
        })()
      })
    }
  }
}

/**
 * @since 0.1.0
 * @category constructors
 */
export const make: MakeHarness = (spec) =>
  Effect.gen(function* () {
    let file: string
    let where: string
    if (spec.url !== undefined) {
      file = spec.url
      where = `file ${file}`
    } else {
      const dir = mkdtempSync(join(tmpdir(), "effect-batchflow-bench-"))
      file = join(dir, "bench.sqlite")
      where = `embedded file ${file}${spec.keep ? " (kept)" : " (temporary, removed at the end)"}`
      if (!spec.keep)
        yield* Effect.addFinalizer(() => Effect.sync(() => rmSync(dir, { recursive: true, force: true })))
    }
    const fail = (cause: unknown) =>
      new BackendError({ message: `cannot open the SQLite file ${file}: ${messageOf(cause)}`, cause })
    const client = yield* Layer.build(SqliteClient.layer({ filename: file })).pipe(Effect.mapError(fail))
    yield* Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe("PRAGMA synchronous = NORMAL")).pipe(
      Effect.provide(client),
      Effect.mapError(fail)
    )
    const db = yield* Effect.try({
      try: () => {
        const Database = createRequire(import.meta.url)("better-sqlite3") as RawDatabaseConstructor
        const db = new Database(file)
        db.pragma("journal_mode = WAL")
        db.pragma("synchronous = NORMAL")
        return db
      },
      catch: fail
    })
    yield* Effect.addFinalizer(() => Effect.sync(() => db.close()))
    return SqlHarness.make({
      spec,
      description: `SQLite, ${where}, table ${spec.table}`,
      notes: [
        "SQLite: journal_mode=WAL, synchronous=NORMAL on both connections (BatchFlow's and the baseline's)"
      ],
      module: "effect-batchflow/Sqlite",
      dialect: {
        name: "sqlite",
        quote,
        double: "REAL",
        expectedName: `'user-' || "id"`,
        createdAtIsExpected: `"created_at" = '2024-01-01 00:00:00'`,
        createdAtText: `"created_at"`
      },
      client,
      flowLayer: Sqlite.layer({ ...flowOptions(spec), direct: spec.sqliteDirect }),
      baselines: [rawBaseline(spec, db)]
    })
  })
