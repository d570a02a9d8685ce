/**
 * A program as a user would write it, against a server that goes dark: rows are submitted through
 * the documented recipe (client layer under `Release.bounded`, its sockets tracked), the server is
 * black-holed mid-flow (a proxy in this process stops answering), and the program closes its flow
 * with `closeTimeout` 2 s and returns from `main`. It must then exit by itself: nothing of the flow's
 * or the driver's may keep Node alive. Prints a line `RESULT <json>`: timings, stats and the reported
 * ids (log lines of late answers may follow it).
 *
 * Env: DIALECT (pg | mysql), PORT (the private server's port), TABLE (created by the parent).
 */
import { MysqlClient } from "@effect/sql-mysql2"
import { PgClient } from "@effect/sql-pg"
import { Chunk, Effect, Fiber, Layer, Redacted, Schema, Stream } from "effect"
import { BatchFlow, Conflict, Table } from "../../../src/index.js"
import * as Mysql from "../../../src/Mysql.js"
import * as Postgres from "../../../src/Postgres.js"
import * as Release from "../../../src/Release.js"
import { startProxy } from "../proxy.js"

const dialect = process.env.DIALECT === "mysql" ? "mysql" : "pg"
const table = process.env.TABLE ?? "fault_exit"
const proxy = await startProxy(Number(process.env.PORT))

const Rows = Table.make(table, {
  columns: Schema.Struct({ id: Schema.Number, v: Schema.String }),
  key: ["id"],
  conflict: Conflict.none
})

const sockets = Release.sockets()
const client =
  dialect === "pg"
    ? PgClient.layer({
        url: Redacted.make(`postgres://postgres@127.0.0.1:${proxy.port}/test`),
        maxConnections: 4,
        stream: sockets.pg
      })
    : MysqlClient.layer({
        url: Redacted.make(`mysql://root@127.0.0.1:${proxy.port}/test`),
        maxConnections: 4,
        poolConfig: { stream: sockets.mysql }
      })
const options = {
  flushSize: 100,
  concurrency: 4,
  flushInterval: "20 millis",
  timeout: "1 second",
  closeTimeout: "2 seconds"
} as const
const FlowLive = (dialect === "pg" ? Postgres.layer(options) : Mysql.layer(options)).pipe(
  Layer.provide(Release.bounded(client, { timeout: "1 second", sockets }))
)

let closeStarted = 0
let closeMillis = 0
const program = Effect.gen(function* () {
  const flow = yield* BatchFlow.BatchFlow
  const failures = yield* Effect.fork(Stream.runCollect(flow.failures))
  for (let id = 0; id < 2_000; id++) {
    yield* flow.submit(Rows, { id, v: `v${id}` })
    if (id === 500) proxy.blackhole()
    if (id % 20 === 19) yield* Effect.sleep("5 millis")
  }
  closeStarted = Date.now()
  yield* flow.close
  closeMillis = Date.now() - closeStarted
  const reported = Chunk.toReadonlyArray(yield* Fiber.join(failures)).map((f) => ({
    outcome: f.outcome,
    ids: f.rows.map((r) => (r as { id: number }).id)
  }))
  return { stats: yield* flow.stats, reported }
})

const { stats, reported } = await Effect.runPromise(Effect.provide(program, FlowLive))
const scopeMillis = Date.now() - closeStarted
await proxy.close()
console.log(
  `RESULT ${JSON.stringify({
    closeMillis,
    scopeMillis,
    stats,
    failed: reported.filter((r) => r.outcome === "failed").flatMap((r) => r.ids),
    unknown: reported.filter((r) => r.outcome === "unknown_outcome").flatMap((r) => r.ids),
    openSockets: sockets.open()
  })}`
)
