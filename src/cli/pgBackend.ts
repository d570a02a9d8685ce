/**
 * The bench on PostgreSQL: BatchFlow writes through `effect-batchflow/Postgres` (one
 * `json_populate_recordset` statement per batch); the baseline is node-postgres writing the same
 * batches with `INSERT … SELECT * FROM unnest($1::bigint[], …)`, the fastest plain-INSERT form
 * measured for this workload. `CHECKPOINT` runs after every reset, outside the clock.
 *
 * @since 0.1.0
 */
import { PgClient } from "@effect/sql-pg"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import pg from "pg"
import * as Postgres from "../Postgres.js"
import { redactUrl } from "./format.js"
import { BackendError, type MakeHarness, messageOf } from "./harness.js"
import { type Baseline, inBatches } from "./raw.js"
import * as SqlHarness from "./sqlHarness.js"
import { type BenchSpec, defaultUrls, flowOptions, makeRow, urlVariables } from "./workload.js"

const quote = (identifier: string) => `"${identifier}"`

const rawBaseline = (spec: BenchSpec, pool: pg.Pool): Baseline => {
  const text =
    `INSERT INTO ${quote(spec.table)} (${SqlHarness.allColumns.map(quote).join(", ")}) ` +
    "SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::varchar[], $4::float8[], $5::timestamp[])" +
    SqlHarness.onConflict(spec.conflict, quote, "EXCLUDED")
  return {
    name: "raw pg unnest",
    description: `node-postgres, INSERT … SELECT * FROM unnest(arrays)${SqlHarness.onConflict(spec.conflict, quote, "EXCLUDED")}, batches of ${spec.flushSize}, ${spec.concurrency} in flight`,
    run: (rows, counter) =>
      inBatches(rows, spec.flushSize, spec.concurrency, counter, async (first, last) => {
        const ids: Array<number> = []
        const users: Array<number> = []
        const names: Array<string> = []
        const amounts: Array<number> = []
        const created: Array<string> = []
        for (let id = first; id <= last; id++) {
          const row = makeRow(id)
          ids.push(row.id)
          users.push(row.user_id)
          names.push(row.name)
          amounts.push(row.amount)
          created.push(row.created_at)
        }
        await pool.query(text, [ids, users, names, amounts, created])
      })
  }
}

/**
 * @since 0.1.0
 * @category constructors
 */
export const make: MakeHarness = (spec) =>
  Effect.gen(function* () {
    const url = spec.url ?? process.env[urlVariables.pg] ?? defaultUrls.pg
    const fail = (cause: unknown) =>
      new BackendError({
        message: `cannot connect to PostgreSQL at ${redactUrl(url)}: ${messageOf(cause)} (set --url or ${urlVariables.pg})`,
        cause
      })
    const client = yield* Layer.build(
      PgClient.layer({ url: Redacted.make(url), maxConnections: spec.concurrency })
    ).pipe(Effect.mapError(fail))
    const pool = yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: async () => {
          const pool = new pg.Pool({ connectionString: url, max: spec.concurrency })
          pool.on("error", () => undefined)
          await pool.query("SELECT 1")
          return pool
        },
        catch: fail
      }),
      (pool) => Effect.promise(() => pool.end())
    )
    return SqlHarness.make({
      spec,
      description: `PostgreSQL at ${redactUrl(url)}, table ${spec.table}`,
      notes: ["PostgreSQL: CHECKPOINT after every reset, outside the clock"],
      module: "effect-batchflow/Postgres",
      dialect: {
        name: "pg",
        quote,
        double: "DOUBLE PRECISION",
        expectedName: `'user-' || "id"`,
        createdAtIsExpected: `"created_at" = TIMESTAMP '2024-01-01 00:00:00'`,
        createdAtText: `to_char("created_at", 'YYYY-MM-DD HH24:MI:SS')`,
        afterReset: "CHECKPOINT"
      },
      client,
      flowLayer: Postgres.layer({
        ...flowOptions(spec),
        ...(spec.pgForm === undefined ? {} : { pgForm: spec.pgForm })
      }),
      baselines: [rawBaseline(spec, pool)]
    })
  })
