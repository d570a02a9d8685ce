/**
 * A durable worker as a process of its own, for the crash tests: writes the stream of table `TABLE`
 * (id, name, amount; key id, Conflict.ignore) to PostgreSQL. Prints `ready` once running, its stats
 * as a JSON line every 100 ms, and on SIGTERM closes (finishing what it holds), prints its final
 * stats and exits 0.
 *
 * Env: REDIS_URL, PG_URL, TABLE, PREFIX, MIN_IDLE_MS, CONSUMER.
 */
import { PgClient } from "@effect/sql-pg"
import { Deferred, Effect, Layer, Redacted, Schema } from "effect"
import * as Durable from "../../src/Durable.js"
import { Conflict, Table } from "../../src/index.js"
import * as Postgres from "../../src/Postgres.js"
import * as Redis from "../../src/Redis.js"

const env = (name: string): string => {
  const value = process.env[name]
  if (value === undefined) throw new Error(`${name} is not set`)
  return value
}

const Events = Table.make(env("TABLE"), {
  columns: Schema.Struct({ id: Schema.Number, name: Schema.String, amount: Schema.Number }),
  key: ["id"],
  conflict: Conflict.ignore
})

const WorkerLive = Durable.worker({
  targets: [Events],
  prefix: env("PREFIX"),
  consumer: env("CONSUMER"),
  minIdle: Number(env("MIN_IDLE_MS")),
  block: "200 millis",
  commandTimeout: "2 seconds",
  closeTimeout: "10 seconds"
}).pipe(
  Layer.provide(Postgres.layer({ flushSize: 500, flushInterval: "10 millis", concurrency: 4 })),
  Layer.provide(PgClient.layer({ url: Redacted.make(env("PG_URL")), maxConnections: 4 })),
  Layer.provide(Redis.layerClient({ url: env("REDIS_URL"), reconnectWait: "200 millis" }))
)

const main = Effect.gen(function* () {
  const stop = yield* Deferred.make<void>()
  process.once("SIGTERM", () => Deferred.unsafeDone(stop, Effect.void))
  const stats = yield* Effect.scoped(
    Effect.gen(function* () {
      const worker = yield* Durable.Worker
      console.log("ready")
      const timer = setInterval(() => {
        Effect.runPromise(worker.stats).then((s) => console.log(JSON.stringify(s)))
      }, 100)
      yield* Deferred.await(stop)
      clearInterval(timer)
      return worker.stats
    }).pipe(Effect.provide(WorkerLive))
  )
  console.log(JSON.stringify({ final: yield* stats }))
})

Effect.runPromise(main).then(
  () => process.exit(0),
  (error) => {
    console.error(String(error))
    process.exit(1)
  }
)
