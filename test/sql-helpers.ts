/**
 * Helpers for the SQL tests: client layers for the local servers (a test fails, never skips, when a
 * server is down: the client layers probe the connection), SQLite temp files, a per-dialect DDL
 * vocabulary, and `runFlow`, which runs a body against a flow, closes it and returns the failures.
 */

import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { MysqlClient } from "@effect/sql-mysql2"
import { PgClient } from "@effect/sql-pg"
import { SqliteClient } from "@effect/sql-sqlite-node"
import { Chunk, Context, Effect, Exit, Fiber, Layer, Redacted, Scope, Stream } from "effect"
import { type BatchExecutor, BatchFlow, type BatchFlowError } from "effect-batchflow"
import * as Mysql from "effect-batchflow/Mysql"
import * as Postgres from "effect-batchflow/Postgres"
import type * as Sql from "effect-batchflow/Sql"
import * as Sqlite from "effect-batchflow/Sqlite"

export const pgUrl = process.env.BATCHFLOW_PG_URL ?? "postgres://postgres@127.0.0.1:5432/test"
export const mysqlUrl = process.env.BATCHFLOW_MYSQL_URL ?? "mysql://root@127.0.0.1:3306/test"

export const pgClient = (maxConnections = 10) => PgClient.layer({ url: Redacted.make(pgUrl), maxConnections })

export const mysqlClient = (maxConnections = 10) =>
  MysqlClient.layer({ url: Redacted.make(mysqlUrl), maxConnections })

/** A fresh SQLite file in a temp directory. */
export const tempSqliteFile = (name: string): string =>
  join(mkdtempSync(join(tmpdir(), `batchflow-${name}-`)), `${name}.sqlite`)

export const sqliteClient = (filename: string) => SqliteClient.layer({ filename })

/** Column types that differ between the dialects. */
export interface Ddl {
  readonly bigint: string
  readonly text: string
  readonly bytes: string
  readonly double: string
}

export interface Backend {
  readonly dialect: Sql.Dialect
  /** A client layer; SQLite gets a new temp file per call. */
  readonly client: () => Layer.Layer<SqlClient.SqlClient, SqlError | unknown>
  readonly flow: (
    options?: Postgres.Options & Mysql.Options & Sqlite.Options
  ) => Layer.Layer<BatchFlow.BatchFlow, unknown, SqlClient.SqlClient>
  readonly executor: (
    options?: Postgres.StatementOptions
  ) => Effect.Effect<BatchExecutor.BatchExecutor, unknown, SqlClient.SqlClient>
  readonly ddl: Ddl
}

export const backends: ReadonlyArray<Backend> = [
  {
    dialect: "pg",
    client: () => pgClient(),
    flow: (options) => Postgres.layer(options),
    executor: (options) => Postgres.makeExecutor(options),
    ddl: { bigint: "BIGINT", text: "TEXT", bytes: "BYTEA", double: "DOUBLE PRECISION" }
  },
  {
    dialect: "mysql",
    client: () => mysqlClient(),
    flow: (options) => Mysql.layer(options),
    executor: (options) => Mysql.makeExecutor(options),
    ddl: { bigint: "BIGINT", text: "LONGTEXT", bytes: "LONGBLOB", double: "DOUBLE" }
  },
  {
    dialect: "sqlite",
    client: () => sqliteClient(tempSqliteFile("sql")),
    flow: (options) => Sqlite.layer(options),
    executor: (options) => Sqlite.makeExecutor(options),
    ddl: { bigint: "BIGINT", text: "TEXT", bytes: "BLOB", double: "REAL" }
  }
]

/**
 * Every backend, SQLite again on its executor's direct path (`direct: true`) and MySQL again through
 * its client (`direct: false`: the direct path is its default).
 */
export const allBackends: ReadonlyArray<Backend & { readonly name: string }> = [
  ...backends.map((backend) => ({ ...backend, name: backend.dialect })),
  ...backends
    .filter((backend) => backend.dialect === "sqlite")
    .map((backend) => ({
      ...backend,
      name: "sqlite direct",
      flow: (options?: Sqlite.Options) => Sqlite.layer({ ...options, direct: true }),
      executor: (options?: Sqlite.StatementOptions) => Sqlite.makeExecutor({ ...options, direct: true })
    })),
  ...backends
    .filter((backend) => backend.dialect === "mysql")
    .map((backend) => ({
      ...backend,
      name: "mysql client",
      flow: (options?: Mysql.Options) => Mysql.layer({ ...options, direct: false }),
      executor: (options?: Mysql.StatementOptions) => Mysql.makeExecutor({ ...options, direct: false })
    }))
]

export interface FlowRun<A> {
  readonly result: A
  readonly failures: ReadonlyArray<BatchFlowError.BatchFailure>
  readonly stats: BatchFlow.Stats
}

/**
 * Builds the flow in its own scope, runs `body`, closes the flow (writing everything) and returns the
 * body's result, every `BatchFailure` and the final stats.
 */
export const runFlow = <A, E, R, LE, LR>(
  flowLayer: Layer.Layer<BatchFlow.BatchFlow, LE, LR>,
  body: (flow: BatchFlow.BatchFlow) => Effect.Effect<A, E, R>
): Effect.Effect<FlowRun<A>, E | LE, R | LR> =>
  Effect.gen(function* () {
    const scope = yield* Scope.make()
    const context = yield* Layer.buildWithScope(flowLayer, scope)
    const flow = Context.get(context, BatchFlow.BatchFlow)
    const failures = yield* Effect.fork(Stream.runCollect(flow.failures))
    const result = yield* body(flow).pipe(Effect.onExit(() => Scope.close(scope, Exit.void)))
    const collected = Chunk.toReadonlyArray(yield* Fiber.join(failures))
    const stats = yield* flow.stats
    return { result, failures: collected, stats }
  })

/** Drops and creates a table (the DDL is written per dialect by the caller). */
export const recreate = (table: string, ddl: string): Effect.Effect<void, SqlError, SqlClient.SqlClient> =>
  Effect.gen(function* () {
    const sql = yield* SqlClient.SqlClient
    yield* sql.unsafe(`DROP TABLE IF EXISTS ${table}`)
    yield* sql.unsafe(ddl)
  })

/** All rows of a table, ordered by `orderBy`. */
export const selectAll = <A extends object = Record<string, unknown>>(
  table: string,
  orderBy: string
): Effect.Effect<ReadonlyArray<A>, SqlError, SqlClient.SqlClient> =>
  Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe<A>(`SELECT * FROM ${table} ORDER BY ${orderBy}`))

export const count = (table: string): Effect.Effect<number, SqlError, SqlClient.SqlClient> =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.map(sql.unsafe<{ readonly n: number | string }>(`SELECT COUNT(*) AS n FROM ${table}`), (rows) =>
      Number(rows[0]!.n)
    )
  )

/** Numbers come back as strings (pg BIGINT), bigints or numbers: compare them as numbers. */
export const num = (value: unknown): number | null => (value === null ? null : Number(value))
