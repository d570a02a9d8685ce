/**
 * A durable producer as a process of its own, for the crash tests: appends rows `FROM .. FROM+COUNT-1`
 * of table `TABLE` in calls of `BATCH` rows (`writeAll`: answered once Redis has the entries) and
 * prints `acked <first> <last>` after each call whose rows were all appended. Ends with a JSON line.
 *
 * Env: REDIS_URL, TABLE, PREFIX, FROM, COUNT, BATCH, PAUSE_MS (between calls, default 0).
 */
import { Effect, Layer, Schema } from "effect"
import * as Durable from "../../src/Durable.js"
import { BatchFlow, Conflict, Table } from "../../src/index.js"
import * as Redis from "../../src/Redis.js"

const env = (name: string, fallback?: string): string => {
  const value = process.env[name] ?? fallback
  if (value === undefined) throw new Error(`${name} is not set`)
  return value
}

const Events = Table.make(env("TABLE"), {
  columns: Schema.Struct({ id: Schema.Number, name: Schema.String, amount: Schema.Number }),
  key: ["id"],
  conflict: Conflict.ignore
})

const from = Number(env("FROM"))
const count = Number(env("COUNT"))
const batch = Number(env("BATCH"))
const pause = Number(env("PAUSE_MS", "0"))

const ProducerLive = Durable.producer({
  prefix: env("PREFIX"),
  flushSize: batch,
  flushInterval: "10 millis"
}).pipe(Layer.provide(Redis.layerClient({ url: env("REDIS_URL") })))

const main = Effect.gen(function* () {
  const flow = yield* BatchFlow.BatchFlow
  let acked = 0
  for (let first = from; first < from + count; first += batch) {
    const last = Math.min(first + batch, from + count) - 1
    const rows = Array.from({ length: last - first + 1 }, (_, i) => ({
      id: first + i,
      name: `row ${first + i}`,
      amount: (first + i) % 7
    }))
    const failures = yield* flow.writeAll(Events, rows)
    if (failures.length === 0) {
      acked += rows.length
      console.log(`acked ${first} ${last}`)
    } else {
      console.log(`failed ${first} ${last} ${failures.map((f) => f.reason).join(",")}`)
    }
    if (pause > 0) yield* Effect.sleep(pause)
  }
  console.log(JSON.stringify({ acked }))
}).pipe(Effect.provide(ProducerLive))

Effect.runPromise(main).then(
  () => process.exit(0),
  (error) => {
    console.error(String(error))
    process.exit(1)
  }
)
