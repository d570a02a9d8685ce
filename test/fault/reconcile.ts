/**
 * Fault scenarios for the SQL backends, and the reconciliation every one of them ends with.
 *
 * A scenario writes rows `0..n-1` (ids, one column of text) into a table of a private server through
 * a fault proxy, injects its fault while the rows are being submitted, closes the flow, and then reads
 * the table straight from the server (not through the proxy). `reconcile` compares what the flow said
 * with what the table holds:
 * - accepted = committed + failed + unknown_outcome (stats and failures agree);
 * - no row reported `failed` (including `close_timeout`) is in the table;
 * - every accepted row not reported is in the table, and every row acked by `write` is;
 * - no row is in the table twice;
 * - close returned within closeTimeout + 1 s.
 */
import { MysqlClient } from "@effect/sql-mysql2"
import { PgClient } from "@effect/sql-pg"
import { Chunk, Effect, Exit, Fiber, Layer, Redacted, Schema, Scope, Stream } from "effect"
import { BatchFlow, type BatchFlowConfig, type BatchFlowError, Conflict, Table } from "effect-batchflow"
import * as Mysql from "effect-batchflow/Mysql"
import * as Postgres from "effect-batchflow/Postgres"
import * as mysql from "mysql2/promise"
import pg from "pg"
import type { FaultProxy } from "./proxy.js"
import type { PrivateMariaDb, PrivatePostgres } from "./servers.js"

export type Dialect = "pg" | "mysql"

export interface Server {
  readonly dialect: Dialect
  readonly server: PrivatePostgres | PrivateMariaDb
}

export interface Scenario {
  readonly table: string
  /** `none`: not idempotent (an unknown outcome is reported, never retried); `ignore`: retried. */
  readonly conflict: "none" | "ignore"
  readonly rows: number
  readonly flow: BatchFlowConfig.Options
  readonly poolSize: number
  /** Rows submitted per producer turn, and the pause between turns (ms). */
  readonly pace?: { readonly rows: number; readonly millis: number } | undefined
  /** Started once `startAt` rows are accepted; the flow closes after it resolved and every row was submitted. */
  readonly fault: () => Promise<void>
  readonly startAt: number
  /** After close, before reading the table (e.g. undo the fault, wait for late answers). */
  readonly afterClose?: (() => Promise<void>) | undefined
}

export interface Outcome {
  readonly accepted: number
  readonly committed: number
  readonly failed: number
  readonly unknownOutcome: number
  readonly lateCommitted: number
  readonly lateFailed: number
  /** Rows per failure reason. */
  readonly reasons: Record<string, number>
  /** How long `flow.close` took. */
  readonly closeMillis: number
  /** How long releasing the client layer took after it. */
  readonly releaseMillis: number
  /** Ids in the table (each once, or more when a row was written twice). */
  readonly inTable: Map<number, number>
  readonly reportedFailed: ReadonlyArray<number>
  readonly reportedUnknown: ReadonlyArray<number>
  readonly acked: ReadonlyArray<number>
}

const Row = Schema.Struct({ id: Schema.Number, v: Schema.String })

const clientLayer = (dialect: Dialect, proxy: FaultProxy, poolSize: number) =>
  dialect === "pg"
    ? PgClient.layer({
        url: Redacted.make(`postgres://postgres@127.0.0.1:${proxy.port}/test`),
        maxConnections: poolSize,
        connectTimeout: "2 seconds"
      })
    : MysqlClient.layer({
        url: Redacted.make(`mysql://root@127.0.0.1:${proxy.port}/test`),
        maxConnections: poolSize,
        poolConfig: { connectTimeout: 2_000 }
      })

/** Creates the scenario's table afresh, straight on the server. */
export const createTable = async ({ dialect, server }: Server, table: string): Promise<void> => {
  await server.query(`DROP TABLE IF EXISTS ${table}`)
  // A primary key in both modes: a row written twice shows as a duplicate_key (none) or is skipped.
  await server.query(
    dialect === "pg"
      ? `CREATE TABLE ${table} (id BIGINT PRIMARY KEY, v TEXT NOT NULL)`
      : `CREATE TABLE ${table} (id BIGINT PRIMARY KEY, v TEXT NOT NULL) ENGINE=InnoDB`
  )
}

/** Ids in the table with how often each is there. */
export const tableIds = async ({ server }: Server, table: string): Promise<Map<number, number>> => {
  const rows = await server.query<{ id: unknown; n: unknown }>(
    `SELECT id, COUNT(*) AS n FROM ${table} GROUP BY id`
  )
  return new Map(rows.map((r) => [Number(r.id), Number(r.n)]))
}

/**
 * Submits rows `0..n-1` (`{ id, v }`), every 50th with `write` (its ack recorded), running `after(id)`
 * after each row (faults, pacing). Returns the acked ids and the writers to join.
 */
export const produceRows = <R>(
  flow: BatchFlow.BatchFlow,
  table: Table.Table<{ readonly id: number; readonly v: string }>,
  rows: number,
  after: (id: number) => Effect.Effect<void, never, R>
) =>
  Effect.gen(function* () {
    const acked: Array<number> = []
    const writes: Array<Fiber.RuntimeFiber<void>> = []
    for (let id = 0; id < rows; id++) {
      const row = { id, v: `v${id}` }
      if (id % 50 === 0) {
        const ack = flow.write(table, row).pipe(
          Effect.tap(() => Effect.sync(() => acked.push(id))),
          Effect.ignore
        )
        writes.push(yield* Effect.fork(ack))
      } else {
        yield* flow.submit(table, row)
      }
      yield* after(id)
    }
    return { acked, writes }
  })

/** The reported ids by outcome, and rows per reason. */
export const tally = (failures: ReadonlyArray<BatchFlowError.BatchFailure>) => {
  const reportedFailed: Array<number> = []
  const reportedUnknown: Array<number> = []
  const reasons: Record<string, number> = {}
  for (const f of failures) {
    if (process.env.FAULT_DEBUG !== undefined && f.reason === process.env.FAULT_DEBUG)
      console.log("CAUSE", f.cause)
    reasons[f.reason] = (reasons[f.reason] ?? 0) + f.rows.length
    const ids = f.rows.map((r) => (r as { id: number }).id)
    ;(f.outcome === "failed" ? reportedFailed : reportedUnknown).push(...ids)
  }
  return { reasons, reportedFailed, reportedUnknown }
}

/** Runs a scenario and returns what the flow said and what the table holds. */
export const runScenario = async (
  target: Server,
  proxy: FaultProxy,
  scenario: Scenario
): Promise<Outcome> => {
  await createTable(target, scenario.table)
  const table = Table.make(scenario.table, {
    columns: Row,
    key: ["id"],
    conflict: scenario.conflict === "ignore" ? Conflict.ignore : Conflict.none
  })
  const flowLayer = (
    target.dialect === "pg" ? Postgres.layer(scenario.flow) : Mysql.layer(scenario.flow)
  ).pipe(Layer.provide(clientLayer(target.dialect, proxy, scenario.poolSize)))
  const pace = scenario.pace ?? { rows: 20, millis: 5 }
  const program = Effect.gen(function* () {
    const scope = yield* Scope.make()
    const ctx = yield* Layer.buildWithScope(flowLayer, scope)
    const flow = ctx.unsafeMap.get(BatchFlow.BatchFlow.key) as BatchFlow.BatchFlow
    const failuresFiber = yield* Effect.fork(Stream.runCollect(flow.failures))
    let fault: Promise<void> | undefined
    const { acked, writes } = yield* produceRows(flow, table, scenario.rows, (id) =>
      Effect.gen(function* () {
        if (fault === undefined && id + 1 >= scenario.startAt) fault = scenario.fault()
        if ((id + 1) % pace.rows === 0) yield* Effect.sleep(pace.millis)
      })
    )
    if (fault !== undefined) yield* Effect.promise(() => fault!)
    const started = Date.now()
    yield* flow.close
    const closeMillis = Date.now() - started
    // The client layer's own release comes after (see Release.bounded for a deadline on it).
    yield* Scope.close(scope, Exit.void)
    const releaseMillis = Date.now() - started - closeMillis
    yield* Fiber.joinAll(writes)
    const failures = Chunk.toReadonlyArray(yield* Fiber.join(failuresFiber))
    return { failures, flow, closeMillis, releaseMillis, acked }
  })
  const { failures, flow, closeMillis, releaseMillis, acked } = await Effect.runPromise(program)
  await scenario.afterClose?.()
  // Read after `afterClose`: late answers of abandoned statements are counted by then.
  const stats = await Effect.runPromise(flow.stats)
  const { reasons, reportedFailed, reportedUnknown } = tally(failures)
  return {
    accepted: stats.accepted,
    committed: stats.committed,
    failed: stats.failed,
    unknownOutcome: stats.unknownOutcome,
    lateCommitted: stats.lateCommitted,
    lateFailed: stats.lateFailed,
    reasons,
    closeMillis,
    releaseMillis,
    inTable: await tableIds(target, scenario.table),
    reportedFailed,
    reportedUnknown,
    acked
  }
}

/** The checks every scenario ends with; returns the problems found (empty when truthful). */
export const problems = (outcome: Outcome, rows: number, closeTimeoutMillis: number): Array<string> => {
  const out: Array<string> = []
  const reported = new Set([...outcome.reportedFailed, ...outcome.reportedUnknown])
  if (outcome.accepted !== rows) out.push(`accepted ${outcome.accepted} of ${rows}`)
  if (outcome.accepted !== outcome.committed + outcome.failed + outcome.unknownOutcome) {
    out.push(
      `accepted ${outcome.accepted} ≠ committed ${outcome.committed} + failed ${outcome.failed} + unknown ${outcome.unknownOutcome}`
    )
  }
  if (outcome.reportedFailed.length !== outcome.failed) out.push("failures stream and stats.failed disagree")
  if (outcome.reportedUnknown.length !== outcome.unknownOutcome)
    out.push("failures stream and stats.unknownOutcome disagree")
  if (reported.size !== outcome.reportedFailed.length + outcome.reportedUnknown.length)
    out.push("a row was reported twice")
  const failedInTable = outcome.reportedFailed.filter((id) => outcome.inTable.has(id))
  if (failedInTable.length > 0) out.push(`${failedInTable.length} row(s) reported failed are in the table`)
  const missing: Array<number> = []
  for (let id = 0; id < rows; id++) if (!reported.has(id) && !outcome.inTable.has(id)) missing.push(id)
  if (missing.length > 0)
    out.push(`${missing.length} committed row(s) missing from the table, e.g. ${missing[0]}`)
  const ackedMissing = outcome.acked.filter((id) => !outcome.inTable.has(id))
  if (ackedMissing.length > 0) out.push(`${ackedMissing.length} row(s) acked by write are not in the table`)
  const twice = [...outcome.inTable.values()].filter((n) => n > 1).length
  if (twice > 0) out.push(`${twice} row(s) in the table twice`)
  if (outcome.closeMillis > closeTimeoutMillis + 1_000) out.push(`close took ${outcome.closeMillis} ms`)
  return out
}

/** One line for the log (and the session note): what each scenario ended with. */
export const summary = (name: string, o: Outcome): string => {
  const unknownInTable = o.reportedUnknown.filter((id) => o.inTable.has(id)).length
  return `${name}: accepted ${o.accepted}, committed ${o.committed}, failed ${o.failed}, unknown_outcome ${o.unknownOutcome} (${unknownInTable} in the table; late: ${o.lateCommitted} committed, ${o.lateFailed} failed), failed found in table ${o.reportedFailed.filter((id) => o.inTable.has(id)).length}, close ${o.closeMillis} ms (client release ${o.releaseMillis} ms), reasons ${JSON.stringify(o.reasons)}`
}

/**
 * Holds a lock on the table from its own connection, straight to the server, so that the flow's
 * statements wait: PostgreSQL `LOCK TABLE … ACCESS EXCLUSIVE` in an open transaction, MariaDB
 * `LOCK TABLES … WRITE`. Returns the release.
 */
export const lockTable = async ({ dialect, server }: Server, table: string): Promise<() => Promise<void>> => {
  if (dialect === "pg") {
    const client = new pg.Client({ connectionString: server.url })
    await client.connect()
    await client.query("BEGIN")
    await client.query(`LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`)
    return async () => {
      await client.query("COMMIT")
      await client.end()
    }
  }
  const connection = await mysql.createConnection(server.url)
  await connection.query(`LOCK TABLES ${table} WRITE`)
  return async () => {
    await connection.query("UNLOCK TABLES")
    await connection.end()
  }
}

export const sleep = (millis: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, millis))
