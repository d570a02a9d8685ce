/**
 * Two independent flows in one program, each declared as its own service with `BatchFlow.Tag`:
 * events into PostgreSQL in big batches with 4 writers, page-view counters into Redis in small,
 * frequent batches with 1 writer. Each has its own buffer, workers, retries, metrics labels and
 * close; a slow database holds back only its own flow. Creates its table if needed, then prints
 * what each flow wrote.
 *
 *   npx tsx examples/two-flows.ts   (PostgreSQL at BATCHFLOW_PG_URL, default the local test db;
 *                                    Redis at BATCHFLOW_REDIS_URL, default redis://127.0.0.1:6379)
 */
import { SqlClient } from "@effect/sql"
import { PgClient } from "@effect/sql-pg"
import { Config, Effect, Layer, Redacted, Schema } from "effect"
import { BatchFlow } from "effect-batchflow"
import * as Conflict from "effect-batchflow/Conflict"
import * as Postgres from "effect-batchflow/Postgres"
import * as Redis from "effect-batchflow/Redis"
import * as Table from "effect-batchflow/Table"

const Events = Table.make("example_two_flows_events", {
  columns: Schema.Struct({ id: Schema.Number, page: Schema.String }),
  conflict: Conflict.ignore,
  key: ["id"]
})

// INCRBY example:two-flows:views:<page> n; "sum" adds up a page's increments within a batch.
const Views = Redis.incrBy("views", { prefix: "example:two-flows:views:", coalesce: "sum" })

// Two flows, two services: `yield* EventFlow` and `yield* PageViews` are distinct flows.
class EventFlow extends BatchFlow.Tag("example/EventFlow")<EventFlow>() {}
class PageViews extends BatchFlow.Tag("example/PageViews")<PageViews>() {}

const EventFlowLive = EventFlow.layer({
  executors: [Postgres.executor()],
  flushSize: 1000,
  flushInterval: "200 millis",
  concurrency: 4,
  metrics: { database: "postgres", instanceId: "events" } // each flow its own instance_id
})

const PageViewsLive = PageViews.layer({
  executors: [Redis.executor()],
  flushSize: 100,
  flushInterval: "20 millis",
  concurrency: 1, // one writer: small pipelines, one after the other
  metrics: { database: "redis", instanceId: "page-views" }
})

const PgLive = PgClient.layerConfig({
  url: Config.redacted("BATCHFLOW_PG_URL").pipe(
    Config.withDefault(Redacted.make("postgres://postgres@127.0.0.1:5432/test"))
  )
})

const FlowsLive = Layer.mergeAll(EventFlowLive, PageViewsLive).pipe(
  Layer.provideMerge(Layer.merge(PgLive, Redis.layerClientConfig()))
)

const pages = ["/", "/docs", "/pricing"]

const program = Effect.gen(function* () {
  const sql = yield* SqlClient.SqlClient
  yield* sql`CREATE TABLE IF NOT EXISTS example_two_flows_events (id BIGINT PRIMARY KEY, page TEXT NOT NULL)`
  const { redis } = yield* Redis.RedisClient
  yield* Effect.promise(() => redis.del(...pages.map((page) => `example:two-flows:views:${page}`))) // from 0

  const events = yield* EventFlow
  const views = yield* PageViews
  for (let id = 1; id <= 3000; id++) {
    const page = pages[id % pages.length]!
    yield* events.submit(Events, { id, page })
    yield* views.submit(Views, { key: page, by: 1 })
  }
  yield* Effect.all([events.flush, views.flush], { concurrency: 2 })

  const [stored] = yield* sql<{ readonly n: number }>`SELECT count(*)::int AS n FROM example_two_flows_events`
  const counts = yield* Effect.promise(() =>
    redis.mget(...pages.map((page) => `example:two-flows:views:${page}`))
  )
  const [eventStats, viewStats] = yield* Effect.all([events.stats, views.stats])
  console.log(
    `events flow: committed ${eventStats.committed} rows; example_two_flows_events holds ${stored?.n}`
  )
  console.log(
    `page-views flow: committed ${viewStats.committed} rows; ${pages.map((p, i) => `${p}=${counts[i]}`).join(" ")}`
  )
})

Effect.runPromise(program.pipe(Effect.provide(FlowsLive))).catch((error) => {
  console.error(error)
  process.exitCode = 1
})
