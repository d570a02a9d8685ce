/**
 * The bench on MySQL / MariaDB: BatchFlow writes through `effect-batchflow/Mysql`; the baseline is
 * mysql2's `query()` (client-side formatting, measured faster than `execute()`) with one multi-row
 * `INSERT` per batch.
 *
 * @since 0.1.0
 */
import { MysqlClient } from "@effect/sql-mysql2"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import * as mysql2 from "mysql2/promise"
import * as Mysql from "../Mysql.js"
import { redactUrl } from "./format.js"
import { BackendError, type MakeHarness, messageOf } from "./harness.js"
import { type Baseline, inBatches } from "./raw.js"
import * as SqlHarness from "./sqlHarness.js"
import { type BenchSpec, defaultUrls, flowOptions, urlVariables } from "./workload.js"

const quote = (identifier: string) => `\`${identifier}\``

const rawBaseline = (spec: BenchSpec, pool: mysql2.Pool): Baseline => {
  const verb =
    spec.conflict === "ignore" ? "INSERT IGNORE" : spec.conflict === "replace" ? "REPLACE" : "INSERT"
  const tail =
    spec.conflict === "update"
      ? ` ON DUPLICATE KEY UPDATE ${SqlHarness.valueColumns.map((c) => `${quote(c)} = VALUES(${quote(c)})`).join(", ")}`
      : ""
  const texts = new Map<number, string>()
  const text = (rows: number) => {
    let found = texts.get(rows)
    if (found === undefined) {
      const tuples = Array.from({ length: rows }, () => "(?, ?, ?, ?, ?)").join(", ")
      found = `${verb} INTO ${quote(spec.table)} (${SqlHarness.allColumns.map(quote).join(", ")}) VALUES ${tuples}${tail}`
      texts.set(rows, found)
    }
    return found
  }
  return {
    name: "raw mysql2 query()",
    description: `mysql2 query() (client-side formatting), one multi-row ${verb}${tail === "" ? "" : " … ON DUPLICATE KEY UPDATE"} per batch of ${spec.flushSize}, ${spec.concurrency} in flight`,
    run: (rows, counter) =>
      inBatches(rows, spec.flushSize, spec.concurrency, counter, async (first, last) => {
        await pool.query(text(last - first + 1), SqlHarness.flatParams(first, last))
      })
  }
}

/**
 * @since 0.1.0
 * @category constructors
 */
export const make: MakeHarness = (spec) =>
  Effect.gen(function* () {
    const url = spec.url ?? process.env[urlVariables.mysql] ?? defaultUrls.mysql
    const fail = (cause: unknown) =>
      new BackendError({
        message: `cannot connect to MySQL/MariaDB at ${redactUrl(url)}: ${messageOf(cause)} (set --url or ${urlVariables.mysql})`,
        cause
      })
    const client = yield* Layer.build(
      MysqlClient.layer({ url: Redacted.make(url), maxConnections: spec.concurrency })
    ).pipe(Effect.mapError(fail))
    const pool = yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: async () => {
          const pool = mysql2.createPool({ uri: url, connectionLimit: spec.concurrency })
          await pool.query("SELECT 1")
          return pool
        },
        catch: fail
      }),
      (pool) => Effect.promise(() => pool.end())
    )
    return SqlHarness.make({
      spec,
      description: `MySQL/MariaDB at ${redactUrl(url)}, table ${spec.table}`,
      notes: [],
      module: "effect-batchflow/Mysql",
      dialect: {
        name: "mysql",
        quote,
        double: "DOUBLE",
        expectedName: "CONCAT('user-', `id`)",
        createdAtIsExpected: "`created_at` = '2024-01-01 00:00:00'",
        createdAtText: "DATE_FORMAT(`created_at`, '%Y-%m-%d %H:%i:%s')"
      },
      client,
      flowLayer: Mysql.layer({ ...flowOptions(spec), direct: spec.mysqlDirect }),
      baselines: [rawBaseline(spec, pool)]
    })
  })
