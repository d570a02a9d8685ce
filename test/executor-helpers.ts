/**
 * Helpers for the executor and flow tests (issue 14): running a flow layer of any requirements in
 * its own scope (the SQL helpers' `runFlow`), and reading from PostgreSQL how the rows of a table
 * were batched (each batch is one transaction, so rows of one batch share `txid_current()`, filled
 * in by a column default).
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { Effect } from "effect"

import { recreate } from "./sql-helpers.js"

/** A flow layer of any requirements, run in its own scope (`runFlow`), and a table's row count. */
export { count as rowCount, type FlowRun as Run, runFlow as runLayer } from "./sql-helpers.js"

/** `DROP TABLE IF EXISTS` then `CREATE TABLE name (columns)`. */
export const recreateTable = (
  name: string,
  columns: string
): Effect.Effect<void, SqlError, SqlClient.SqlClient> => recreate(name, `CREATE TABLE ${name} (${columns})`)

/** The column to add to a PostgreSQL table whose batches `batchSizes` reads. */
export const txColumn = "tx BIGINT NOT NULL DEFAULT txid_current()"

/**
 * The sizes of the batches a PostgreSQL table (with `txColumn`) was written in, in the order of the
 * batches' first `id`.
 */
export const batchSizes = (
  table: string
): Effect.Effect<ReadonlyArray<number>, SqlError, SqlClient.SqlClient> =>
  Effect.flatMap(SqlClient.SqlClient, (sql) =>
    Effect.map(
      sql.unsafe<{ readonly n: number | string }>(
        `SELECT COUNT(*) AS n FROM ${table} GROUP BY tx ORDER BY MIN(id)`
      ),
      (rows) => rows.map((row) => Number(row.n))
    )
  )
