/**
 * Durable mode on the shared Redis (its own database and key prefix per test) and PostgreSQL (tables
 * of its own): a producer's rows reach a keyed table through a worker; what cannot be written goes
 * to the dead-letter stream with its reason; a full stream refuses appends with `StreamFull`; a
 * worker refuses targets that are not idempotent; closing a worker finishes and acknowledges what it
 * holds. Crashes are in durable-crash.test.ts, against a private Redis.
 */
import { spawnSync } from "node:child_process"
import { PgClient } from "@effect/sql-pg"
import {
  BigDecimal,
  Context,
  Data,
  DateTime,
  Effect,
  Either,
  Exit,
  Layer,
  Logger,
  Metric,
  Option,
  Redacted,
  Schema,
  Scope
} from "effect"
import { BatchExecutor, BatchFlow, Conflict, Table, Target } from "effect-batchflow"
import * as Durable from "effect-batchflow/Durable"
import * as Postgres from "effect-batchflow/Postgres"
import * as Redis from "effect-batchflow/Redis"
import type { Redis as IORedis } from "ioredis"
import type pg from "pg"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { codecOf } from "../src/internal/durable/codec.js"
import {
  backlog,
  countRows,
  DB,
  durableFixture,
  eventsTable,
  pgUrl,
  redisAt,
  sharedRedisUrl,
  sleep,
  unique,
  until,
  withLayer
} from "./durable/helpers.js"
import { startRedis } from "./fault/servers.js"

class Sink extends BatchFlow.Tag("test/DurableSink")<Sink>() {}

const SinkLive = Sink.layer({
  executors: [Postgres.executor()],
  flushSize: 500,
  flushInterval: "10 millis"
}).pipe(Layer.provide(PgClient.layer({ url: Redacted.make(pgUrl), maxConnections: 4 })))
const ClientLive = Redis.layerClient({ url: sharedRedisUrl, db: DB })

/** A durable worker metric's count for one target and tag value. */
const entriesMetric = (target: string, event: string) =>
  Effect.runPromise(
    Metric.value(Durable.workerEntries.pipe(Metric.tagged("target", target), Metric.tagged("event", event)))
  ).then((state) => state.count)
const rowsMetric = (target: string, outcome: string) =>
  Effect.runPromise(
    Metric.value(Durable.workerRows.pipe(Metric.tagged("target", target), Metric.tagged("outcome", outcome)))
  ).then((state) => state.count)

describe("durable mode", () => {
  const fx = durableFixture("durable_test", DB)
  const { prefix, table } = fx
  let pool: pg.Pool
  let redis: IORedis

  beforeAll(async () => {
    await fx.setUp()
    pool = fx.pool
    redis = fx.redis
  })

  afterAll(() => fx.tearDown())

  it("a producer's rows reach the keyed table through a worker, each once, and nothing is left pending", async () => {
    const name = await table("dur_happy")
    const Events = eventsTable(name)
    const key = Durable.streamKey(Events, prefix)
    const layer = Layer.mergeAll(
      Durable.producer({ prefix, flushSize: 500, flushInterval: "10 millis" }),
      Durable.worker({
        targets: [Events],
        prefix,
        flow: Sink,
        block: "100 millis",
        minIdle: "5 seconds"
      }).pipe(Layer.provide(SinkLive))
    ).pipe(Layer.provide(ClientLive))
    const N = 5_000
    const stats = await withLayer(layer, async (get) => {
      const flow = get<BatchFlow.BatchFlow>(BatchFlow.BatchFlow)
      const worker = get<Durable.WorkerService>(Durable.Worker)
      const rows = Array.from({ length: N }, (_, i) => ({ id: i, name: `e${i}`, amount: i % 10 }))
      await Effect.runPromise(flow.submitAll(Events, rows.slice(0, N - 1)))
      // `write` answers once Redis has the entry: the database may not have the row yet.
      await Effect.runPromise(flow.write(Events, rows[N - 1]!))
      await Effect.runPromise(flow.flush)
      expect((await Effect.runPromise(flow.stats)).committed).toBe(N)
      await until(
        async () => (await countRows(pool, name)) === N,
        15_000,
        async () => `${await countRows(pool, name)} rows in the table`
      )
      await until(
        async () => (await backlog(redis, key)).pending === 0,
        5_000,
        async () => JSON.stringify(await backlog(redis, key))
      )
      return Effect.runPromise(worker.stats)
    })
    const { rows } = await pool.query(
      `SELECT count(*)::int AS n, count(DISTINCT id)::int AS ids, sum(amount)::int AS total, min(name) AS first FROM ${name}`
    )
    expect(rows[0]).toEqual({ n: N, ids: N, total: 4_500 * 5, first: "e0" })
    expect(await backlog(redis, key)).toEqual({ length: 0, pending: 0 })
    // One entry per flushed group of rows, not one per row.
    expect(stats.read).toBeLessThanOrEqual(Math.ceil(N / 500) + 5)
    expect(stats).toMatchObject({ rowsCommitted: N, deadLettered: 0 })
    expect(stats.acked).toBe(stats.read)
  })

  it("rows the database refuses go to the dead-letter stream with their reason; the others are committed", async () => {
    const name = await table("dur_poison", ", CHECK (amount >= 0)")
    const Events = eventsTable(name)
    const layer = Layer.mergeAll(
      Durable.producer({ prefix, flushSize: 200 }),
      Durable.worker({ targets: [Events], prefix, flow: Sink, block: "100 millis" }).pipe(
        Layer.provide(SinkLive)
      )
    ).pipe(Layer.provide(ClientLive))
    const rows = Array.from({ length: 600 }, (_, i) => ({
      id: i,
      name: `e${i}`,
      amount: i % 150 === 3 ? -1 : 1
    }))
    await withLayer(layer, async (get) => {
      const flow = get<BatchFlow.BatchFlow>(BatchFlow.BatchFlow)
      await Effect.runPromise(flow.writeAll(Events, rows))
      await until(
        async () => Number(await redis.call("xlen", Durable.deadLetterKey(Events, prefix))) >= 4,
        15_000,
        async () => `dead letters: ${await redis.call("xlen", Durable.deadLetterKey(Events, prefix))}`
      )
    })
    expect(await countRows(pool, name)).toBe(596)
    const dead = (await redis.call("xrange", Durable.deadLetterKey(Events, prefix), "-", "+")) as Array<
      [string, Array<string>]
    >
    const records = dead.map(([, fields]) => Object.fromEntries(chunk(fields)))
    expect(records.map((r) => r.reason)).toEqual(Array(4).fill("check_violation"))
    const ids = records.flatMap((r) => (JSON.parse(r.rows!) as Array<{ id: number }>).map((row) => row.id))
    expect(ids.sort((a, b) => a - b)).toEqual([3, 153, 303, 453])
    // The detail names the reason but no row values.
    for (const r of records) expect(r.detail).toContain("check_violation")
    expect(await backlog(redis, Durable.streamKey(Events, prefix))).toEqual({ length: 0, pending: 0 })
  })

  it("a dead letter that cannot be appended leaves its entry pending (no ack); it is settled once the append works", async () => {
    const name = await table("dur_deadfail", ", CHECK (amount >= 0)")
    const Events = eventsTable(name)
    const key = Durable.streamKey(Events, prefix)
    const deadKey = Durable.deadLetterKey(Events, prefix)
    // The dead-letter key holds a string: every XADD to it fails with WRONGTYPE.
    await redis.set(deadKey, "not a stream")
    const layer = Layer.mergeAll(
      Durable.producer({ prefix, flushSize: 100 }),
      Durable.worker({ targets: [Events], prefix, flow: Sink, block: "50 millis" }).pipe(
        Layer.provide(SinkLive)
      )
    ).pipe(Layer.provide(ClientLive))
    const rows = Array.from({ length: 100 }, (_, i) => ({ id: i, name: `e${i}`, amount: i === 7 ? -1 : 1 }))
    await withLayer(layer, async (get) => {
      const flow = get<BatchFlow.BatchFlow>(BatchFlow.BatchFlow)
      const worker = get<Durable.WorkerService>(Durable.Worker)
      await Effect.runPromise(flow.writeAll(Events, rows))
      await until(
        async () => (await countRows(pool, name)) === 99,
        10_000,
        async () => `${await countRows(pool, name)} rows`
      )
      await sleep(500)
      // Written, but its dead letter could not be appended: not acknowledged, not deleted.
      expect(await backlog(redis, key)).toEqual({ length: 1, pending: 1 })
      expect(await redis.type(deadKey)).toBe("string")
      expect((await Effect.runPromise(worker.stats)).acked).toBe(0)
      await redis.del(deadKey)
      await until(
        async () => (await backlog(redis, key)).pending === 0,
        10_000,
        async () => JSON.stringify(await backlog(redis, key))
      )
      expect(await Effect.runPromise(worker.stats)).toMatchObject({ acked: 1, deadLettered: 1, lost: 0 })
    })
    expect(await entriesMetric(name, "acked")).toBe(1)
    expect(await entriesMetric(name, "dead_lettered")).toBe(1)
    expect(await rowsMetric(name, "committed")).toBe(99)
    expect(await rowsMetric(name, "dead_lettered")).toBe(1)
    const dead = (await redis.call("xrange", deadKey, "-", "+")) as Array<[string, Array<string>]>
    expect(dead.length).toBe(1)
    const record = Object.fromEntries(chunk(dead[0]![1]))
    expect(record.reason).toBe("check_violation")
    expect((JSON.parse(record.rows!) as Array<{ id: number }>).map((r) => r.id)).toEqual([7])
    expect(await backlog(redis, key)).toEqual({ length: 0, pending: 0 })
  })

  it("with deadLetter: log, the log line is written while the entry is still pending (then it is acknowledged)", async () => {
    const name = await table("dur_deadlog", ", CHECK (amount >= 0)")
    const Events = eventsTable(name)
    const key = Durable.streamKey(Events, prefix)
    // At the log line, asks Redis synchronously (the event loop stands still) what is pending.
    const seen: Array<string> = []
    const logger = Logger.replace(
      Logger.defaultLogger,
      Logger.make(({ message }) => {
        const text = String(message)
        if (!text.includes("dropped after")) return
        const reply = spawnSync("redis-cli", ["-u", `${sharedRedisUrl}/${DB}`, "xlen", key], {
          encoding: "utf8"
        })
        seen.push(reply.stdout.trim())
      })
    )
    const layer = Layer.mergeAll(
      Durable.producer({ prefix, flushSize: 100 }),
      Durable.worker({ targets: [Events], prefix, flow: Sink, block: "50 millis", deadLetter: "log" }).pipe(
        Layer.provide(SinkLive),
        Layer.provide(logger)
      )
    ).pipe(Layer.provide(ClientLive))
    const rows = Array.from({ length: 100 }, (_, i) => ({ id: i, name: `e${i}`, amount: i === 7 ? -1 : 1 }))
    await withLayer(layer, async (get) => {
      await Effect.runPromise(get<BatchFlow.BatchFlow>(BatchFlow.BatchFlow).writeAll(Events, rows))
      await until(
        async () => (await backlog(redis, key)).pending === 0 && seen.length > 0,
        10_000,
        async () => `${JSON.stringify(await backlog(redis, key))}, ${seen.length} log lines`
      )
    })
    expect(seen).toEqual(["1"])
    expect(await countRows(pool, name)).toBe(99)
    expect(Number(await redis.exists(Durable.deadLetterKey(Events, prefix)))).toBe(0)
  })

  it("an entry delivered more than maxDeliveries times goes to the dead-letter stream, acknowledged", async () => {
    const name = await table("dur_maxdel")
    const Events = eventsTable(name)
    const key = Durable.streamKey(Events, prefix)
    await redis.call("xgroup", "create", key, "batchflow", "0", "MKSTREAM")
    const id = String(
      await redis.call(
        "xadd",
        key,
        "*",
        "producer",
        "p",
        "seq",
        "0",
        "count",
        "1",
        "rows",
        '[{"id":1,"name":"x","amount":1}]'
      )
    )
    // A consumer that took it and crashed, six times over.
    await redis.call("xreadgroup", "group", "batchflow", "crashed", "streams", key, ">")
    await redis.call("xclaim", key, "batchflow", "crashed", 0, id, "RETRYCOUNT", 6)
    const undecodable = String(
      await redis.call("xadd", key, "*", "producer", "p", "seq", "1", "count", "1", "rows", "{not json")
    )
    const layer = Durable.worker({
      targets: [Events],
      prefix,
      flow: Sink,
      block: "50 millis",
      minIdle: "50 millis",
      maxDeliveries: 3
    }).pipe(Layer.provide(SinkLive), Layer.provide(ClientLive))
    const deadKey = Durable.deadLetterKey(Events, prefix)
    await withLayer(layer, () =>
      until(
        async () => Number(await redis.call("xlen", deadKey)) === 2,
        10_000,
        async () => `dead letters: ${await redis.call("xlen", deadKey)}`
      )
    )
    const dead = (await redis.call("xrange", deadKey, "-", "+")) as Array<[string, Array<string>]>
    const byEntry = new Map(
      dead.map(([, fields]) => Object.fromEntries(chunk(fields))).map((r) => [r.entry, r])
    )
    expect(byEntry.get(id)).toMatchObject({ reason: "max_deliveries", deliveries: "7", count: "1" })
    expect(byEntry.get(undecodable)).toMatchObject({ reason: "undecodable" })
    expect(await countRows(pool, name)).toBe(0)
    expect(await backlog(redis, key)).toEqual({ length: 0, pending: 0 })
  })

  it("rows whose write failed transiently are written again by the worker holding the entry, without a new delivery, past maxDeliveries × minIdle", async () => {
    const Flaky = Target.make(unique("dur_flaky"), {
      schema: Schema.Struct({ id: Schema.Number }),
      key: ["id"],
      idempotentWrites: true
    })
    const calls: Array<number> = []
    class Unavailable extends Data.TaggedError("Unavailable")<{}> {}
    class FlakySink extends BatchFlow.Tag("test/DurableFlakySink")<FlakySink>() {}
    // The sink refuses the first 4 calls with a retryable error, then writes.
    const FlakySinkLive = FlakySink.layer({
      executors: [
        BatchExecutor.forTarget(
          Flaky,
          (rows) =>
            Effect.suspend(() => {
              calls.push(rows.length)
              return calls.length <= 4 ? Effect.fail(new Unavailable()) : Effect.void
            }),
          {
            rules: [
              (e) => (e._tag === "Unavailable" ? { retryable: true, reason: "unavailable" } : undefined)
            ]
          }
        )
      ],
      retry: { maxAttempts: 1 }
    })
    const key = Durable.streamKey(Flaky, prefix)
    const layer = Layer.mergeAll(
      Durable.producer({ prefix, flushSize: 50 }),
      Durable.worker({
        targets: [Flaky],
        prefix,
        flow: FlakySink,
        block: "50 millis",
        minIdle: "100 millis",
        maxDeliveries: 1,
        retryBackoff: "100 millis",
        maxRetryBackoff: "200 millis"
      }).pipe(Layer.provide(FlakySinkLive))
    ).pipe(Layer.provide(ClientLive))
    const stats = await withLayer(layer, async (get) => {
      const flow = get<BatchFlow.BatchFlow>(BatchFlow.BatchFlow)
      const worker = get<Durable.WorkerService>(Durable.Worker)
      await Effect.runPromise(
        flow.writeAll(
          Flaky,
          Array.from({ length: 50 }, (_, id) => ({ id }))
        )
      )
      const started = Date.now()
      await until(
        async () => (await Effect.runPromise(worker.stats)).acked === 1,
        10_000,
        async () => JSON.stringify(await Effect.runPromise(worker.stats))
      )
      // 4 backoffs of at least 50, 100, 100 and 100 ms: longer than maxDeliveries × minIdle.
      expect(Date.now() - started).toBeGreaterThan(300)
      return Effect.runPromise(worker.stats)
    })
    expect(calls).toEqual([50, 50, 50, 50, 50])
    expect(stats).toMatchObject({
      read: 1,
      retried: 4,
      returned: 0,
      claimed: 0,
      acked: 1,
      rowsCommitted: 50,
      deadLettered: 0
    })
    expect(await backlog(redis, key)).toEqual({ length: 0, pending: 0 })
    expect(Number(await redis.exists(Durable.deadLetterKey(Flaky, prefix)))).toBe(0)
  })

  /** A target of ids, a flow that writes it with `write`, and an entry appended by hand. */
  const idsTarget = (name: string) =>
    Target.make(unique(name), {
      schema: Schema.Struct({ id: Schema.Number }),
      key: ["id"],
      idempotentWrites: true
    })
  const appendIds = async (key: string, ids: ReadonlyArray<number>) =>
    String(
      await redis.call(
        "xadd",
        key,
        "*",
        "producer",
        "p",
        "seq",
        String(ids[0] ?? 0),
        "count",
        String(ids.length),
        "rows",
        JSON.stringify(ids.map((id) => ({ id })))
      )
    )
  const pendingOf = async (key: string, id: string) =>
    (
      (await redis.call("xpending", key, "batchflow", id, id, 1)) as Array<[string, string, number, number]>
    )[0]

  it("an entry another consumer claimed while this worker was writing it stays with that consumer: not touched back, not acknowledged", async () => {
    const T = idsTarget("dur_stolen")
    const key = Durable.streamKey(T, prefix)
    let gate!: () => void
    const opened = new Promise<void>((resolve) => (gate = resolve))
    const calls: Array<number> = []
    class GateSink extends BatchFlow.Tag("test/DurableGateSink")<GateSink>() {}
    const GateSinkLive = GateSink.layer({
      executors: [
        BatchExecutor.forTarget(T, (rows) =>
          Effect.suspend(() => {
            calls.push(rows.length)
            return Effect.promise(() => opened)
          })
        )
      ]
    })
    await redis.call("xgroup", "create", key, "batchflow", "0", "MKSTREAM")
    const id = await appendIds(key, [1, 2, 3])
    const layer = Durable.worker({
      targets: [T],
      prefix,
      flow: GateSink,
      consumer: "w",
      block: "50 millis",
      minIdle: "300 millis",
      claimInterval: "1 hour"
    }).pipe(Layer.provide(GateSinkLive), Layer.provide(ClientLive))
    const stats = await withLayer(layer, async (get) => {
      const worker = get<Durable.WorkerService>(Durable.Worker)
      await until(
        async () => calls.length === 1,
        5_000,
        () => "not written"
      )
      // Another worker takes it over (as after a pause of "w" longer than minIdle).
      await redis.call("xclaim", key, "batchflow", "other", 0, id)
      // Several keep-alive rounds (every 100 ms): "w" must not take it back.
      await sleep(500)
      expect((await pendingOf(key, id))?.[1]).toBe("other")
      gate()
      await until(
        async () => (await Effect.runPromise(worker.stats)).lost === 1,
        5_000,
        async () => JSON.stringify(await Effect.runPromise(worker.stats))
      )
      return Effect.runPromise(worker.stats)
    })
    expect(stats).toMatchObject({ read: 1, acked: 0, lost: 1 })
    // Still pending, and still the other consumer's: its settle is the one that counts.
    expect((await pendingOf(key, id))?.[1]).toBe("other")
    expect(await backlog(redis, key)).toEqual({ length: 1, pending: 1 })
  })

  it("a busy worker's keep-alive does not take the entries it is settling for lost ones (no warning, every entry acknowledged)", async () => {
    // Keep-alive rounds every 20 ms while 8 writers settle entries as fast as Redis answers: a round
    // that runs just after a settle's XACK, before the worker has let go of that entry, finds it no
    // longer pending. That is the worker's own settle, not another consumer's claim.
    const T = idsTarget("dur_keep_race")
    const key = Durable.streamKey(T, prefix)
    const entries = 1_500
    await redis.call("xgroup", "create", key, "batchflow", "0", "MKSTREAM")
    const pipeline = redis.pipeline()
    for (let i = 0; i < entries; i++)
      pipeline.xadd(
        key,
        "*",
        "producer",
        "p",
        "seq",
        String(i),
        "count",
        "1",
        "rows",
        JSON.stringify([{ id: i }])
      )
    await pipeline.exec()
    const written = new Set<number>()
    const FastFlow = Context.GenericTag<BatchFlow.BatchFlow>("test/DurableFastFlow")
    const flow = {
      writeAll: (_target: unknown, rows: Iterable<{ id: number }>) =>
        Effect.sync(() => {
          for (const row of rows) written.add(row.id)
          return []
        })
    } as unknown as BatchFlow.BatchFlow
    const warnings: Array<string> = []
    const logger = Logger.replace(
      Logger.defaultLogger,
      Logger.make(({ message }) => {
        const text = String(message)
        if (text.includes("no longer pending")) warnings.push(text)
      })
    )
    const layer = Durable.worker({
      targets: [T],
      prefix,
      flow: FastFlow,
      consumer: "w",
      concurrency: 8,
      block: "50 millis",
      minIdle: "60 millis",
      claimInterval: "1 hour"
    }).pipe(Layer.provide(Layer.succeed(FastFlow, flow)), Layer.provide(ClientLive), Layer.provide(logger))
    const stats = await withLayer(layer, async (get) => {
      const worker = get<Durable.WorkerService>(Durable.Worker)
      await until(
        async () => (await Effect.runPromise(worker.stats)).acked === entries,
        20_000,
        async () => JSON.stringify(await Effect.runPromise(worker.stats))
      )
      return Effect.runPromise(worker.stats)
    })
    expect(warnings).toEqual([])
    expect(stats).toMatchObject({ read: entries, claimed: 0, acked: entries, lost: 0 })
    expect(written.size).toBe(entries)
    // The same counts in the target's metrics.
    expect(await entriesMetric(T.name, "read")).toBe(entries)
    expect(await entriesMetric(T.name, "acked")).toBe(entries)
    expect(await entriesMetric(T.name, "lost")).toBe(0)
    expect(await rowsMetric(T.name, "committed")).toBe(entries)
    expect(await backlog(redis, key)).toEqual({ length: 0, pending: 0 })
  })

  it("an entry whose delivery count cannot be read after XAUTOCLAIM is not written (maxDeliveries is not bypassed)", async () => {
    const T = idsTarget("dur_nocount")
    const key = Durable.streamKey(T, prefix)
    const calls: Array<number> = []
    class CountSink extends BatchFlow.Tag("test/DurableCountSink")<CountSink>() {}
    const CountSinkLive = CountSink.layer({
      executors: [BatchExecutor.forTarget(T, (rows) => Effect.sync(() => void calls.push(rows.length)))]
    })
    await redis.call("xgroup", "create", key, "batchflow", "0", "MKSTREAM")
    const id = await appendIds(key, [1])
    // Delivered 5 times already to a consumer that crashed; maxDeliveries is 3.
    await redis.call("xreadgroup", "group", "batchflow", "crashed", "streams", key, ">")
    await redis.call("xclaim", key, "batchflow", "crashed", 0, id, "RETRYCOUNT", 5)
    // A user that may not run XPENDING: XAUTOCLAIM works, reading the delivery count fails.
    const user = unique("dur_noxpending")
    await redis.call("acl", "setuser", user, "on", ">pw", "resetkeys", `~${prefix}*`, "+@all", "-xpending")
    try {
      const layer = Durable.worker({
        targets: [T],
        prefix,
        flow: CountSink,
        consumer: "w",
        block: "50 millis",
        minIdle: "50 millis",
        maxDeliveries: 3
      }).pipe(
        Layer.provide(CountSinkLive),
        Layer.provide(
          Redis.layerClient({ url: sharedRedisUrl, db: DB, username: user, password: Redacted.make("pw") })
        )
      )
      const stats = await withLayer(layer, async (get) => {
        const worker = get<Durable.WorkerService>(Durable.Worker)
        // Claimed (XAUTOCLAIM counts each claim as a delivery) several times over.
        await until(
          async () => Number((await pendingOf(key, id))?.[3]) >= 9,
          5_000,
          async () => JSON.stringify(await pendingOf(key, id))
        )
        return Effect.runPromise(worker.stats)
      })
      expect(calls).toEqual([])
      expect(stats).toMatchObject({ claimed: 0, acked: 0, rowsCommitted: 0 })
      expect((await pendingOf(key, id))?.[1]).toBe("w")
      expect(await backlog(redis, key)).toEqual({ length: 1, pending: 1 })
      // Closing keeps a consumer that still has pending entries (DELCONSUMER would drop them).
      const consumers = (await redis.call("xinfo", "consumers", key, "batchflow")) as Array<Array<unknown>>
      expect(consumers.map((c) => c[1])).toContain("w")
    } finally {
      await redis.call("acl", "deluser", user)
    }
  })

  it("a write that dies leaves its entry pending and the worker goes on; closing still completes and cleans up", async () => {
    const T = idsTarget("dur_dies")
    const key = Durable.streamKey(T, prefix)
    const written: Array<number> = []
    let dead = 0
    const DyingFlow = Context.GenericTag<BatchFlow.BatchFlow>("test/DurableDyingFlow")
    const flow = {
      writeAll: (_target: unknown, rows: Iterable<{ id: number }>) =>
        Effect.suspend(() => {
          if (dead++ === 0) return Effect.die(new Error("boom"))
          for (const row of rows) written.push(row.id)
          return Effect.succeed([])
        })
    } as unknown as BatchFlow.BatchFlow
    await redis.call("xgroup", "create", key, "batchflow", "0", "MKSTREAM")
    await appendIds(key, [1])
    await appendIds(key, [2])
    const layer = Durable.worker({
      targets: [T],
      prefix,
      flow: DyingFlow,
      consumer: "w",
      concurrency: 1,
      block: "50 millis",
      minIdle: "100 millis"
    }).pipe(Layer.provide(Layer.succeed(DyingFlow, flow)), Layer.provide(ClientLive))
    const stats = await withLayer(layer, async (get) => {
      const worker = get<Durable.WorkerService>(Durable.Worker)
      // The only writer survives the defect: entry 2 is written, entry 1 is claimed again and written.
      await until(
        async () => (await Effect.runPromise(worker.stats)).acked === 2,
        5_000,
        async () => JSON.stringify(await Effect.runPromise(worker.stats))
      )
      return Effect.runPromise(worker.stats)
    })
    expect(written.sort()).toEqual([1, 2])
    expect(stats).toMatchObject({ read: 2, claimed: 1, acked: 2 })
    expect(await backlog(redis, key)).toEqual({ length: 0, pending: 0 })
    // The cleanup ran to its end: the consumer was removed from the group.
    expect(await redis.call("xinfo", "consumers", key, "batchflow")).toEqual([])
  })

  it("a worker whose flow is closed gives back what it read and takes no more entries (none dead-lettered)", async () => {
    const T = idsTarget("dur_flowclosed")
    const key = Durable.streamKey(T, prefix)
    class ClosingSink extends BatchFlow.Tag("test/DurableClosingSink")<ClosingSink>() {}
    const ClosingSinkLive = ClosingSink.layer({
      executors: [BatchExecutor.forTarget(T, () => Effect.void)]
    })
    await redis.call("xgroup", "create", key, "batchflow", "0", "MKSTREAM")
    const layer = Durable.worker({
      targets: [T],
      prefix,
      flow: ClosingSink,
      consumer: "w",
      block: "50 millis",
      minIdle: "100 millis",
      maxDeliveries: 2
    }).pipe(Layer.provideMerge(ClosingSinkLive), Layer.provide(ClientLive))
    const stats = await withLayer(layer, async (get) => {
      const worker = get<Durable.WorkerService>(Durable.Worker)
      await Effect.runPromise(get<BatchFlow.BatchFlow>(ClosingSink).close)
      for (let i = 0; i < 5; i++) await appendIds(key, [i])
      await until(
        async () => (await Effect.runPromise(worker.stats)).returned > 0,
        5_000,
        async () => JSON.stringify(await Effect.runPromise(worker.stats))
      )
      // Many times minIdle: the entries given back are not claimed again (each claim a delivery).
      await sleep(1_000)
      return Effect.runPromise(worker.stats)
    })
    expect(stats).toMatchObject({ claimed: 0, acked: 0, deadLettered: 0 })
    expect(stats.returned).toBe(stats.read)
    expect(await backlog(redis, key)).toEqual({ length: 5, pending: stats.read })
    expect(Number(await redis.exists(Durable.deadLetterKey(T, prefix)))).toBe(0)
  })

  it("a worker refuses a retry backoff that is not a positive duration, or a cap below it", async () => {
    const T = idsTarget("dur_badbackoff")
    const build = (options: Partial<Durable.WorkerOptions<Sink>>) =>
      Effect.runPromise(
        Effect.either(
          Effect.scoped(
            Layer.build(
              Durable.worker({ targets: [T], prefix, flow: Sink, block: "10 millis", ...options }).pipe(
                Layer.provide(SinkLive),
                Layer.provide(ClientLive)
              )
            )
          )
        )
      )
    const fieldOf = (result: Either.Either<unknown, { readonly _tag: string; readonly field?: string }>) =>
      Either.isLeft(result) ? [result.left._tag, result.left.field] : "built"
    expect(fieldOf(await build({ retryBackoff: 0 }))).toEqual(["DurableConfigError", "retryBackoff"])
    expect(fieldOf(await build({ retryBackoff: "1 second", maxRetryBackoff: "500 millis" }))).toEqual([
      "DurableConfigError",
      "maxRetryBackoff"
    ])
    expect(fieldOf(await build({ maxRetryBackoff: Infinity }))).toEqual([
      "DurableConfigError",
      "maxRetryBackoff"
    ])
    expect(fieldOf(await build({ retryBackoff: "10 seconds" }))).toBe("built")
  })

  it("closing after the reader reconnected unblocks its read at once (its new connection's id)", async () => {
    const T = idsTarget("dur_reconnect")
    const key = Durable.streamKey(T, prefix)
    const readers = async () =>
      String(await redis.call("client", "list"))
        .split("\n")
        .filter((line) => line.includes(` db=${DB} `) && line.includes("cmd=xreadgroup"))
        .map((line) => /(?:^| )id=(\d+)/.exec(line)![1]!)
    const layer = Durable.worker({ targets: [T], prefix, flow: Sink, block: "5 seconds" }).pipe(
      Layer.provide(SinkLive),
      Layer.provide(ClientLive)
    )
    let closing = 0
    await withLayer(layer, async () => {
      await until(
        async () => (await readers()).length > 0,
        5_000,
        () => "no blocked read"
      )
      const before = await readers()
      for (const id of before) await redis.call("client", "kill", "id", id)
      // The reader reconnects and blocks again, on a connection with another id.
      await until(
        async () => (await readers()).some((id) => !before.includes(id)),
        10_000,
        async () => `readers ${JSON.stringify(await readers())}, before ${JSON.stringify(before)}`
      )
      closing = Date.now()
    })
    expect(Date.now() - closing).toBeLessThan(2_000)
    expect(await backlog(redis, key)).toEqual({ length: 0, pending: 0 })
  })

  it("closing a worker takes at most about closeTimeout even when Redis stops answering", async () => {
    const server = await startRedis()
    const direct = await redisAt(server.url)
    try {
      const T = idsTarget("dur_hung")
      // The worker in a scope of its own, closed while the flow and the client stay open.
      const elapsed = await Effect.runPromise(
        Effect.scoped(
          Effect.gen(function* () {
            const inner = yield* Scope.make()
            yield* Durable.makeWorker({
              targets: [T],
              prefix,
              flow: Sink,
              block: "100 millis",
              closeTimeout: "500 millis",
              commandTimeout: "5 seconds"
            }).pipe(Scope.extend(inner))
            yield* Effect.sleep(300)
            // Every client's commands wait (up to 4 s): CLIENT UNBLOCK, the read, the consumer's removal.
            yield* Effect.promise(() => direct.call("client", "pause", 4_000, "ALL"))
            const start = Date.now()
            yield* Scope.close(inner, Exit.void)
            return Date.now() - start
          })
        ).pipe(Effect.provide(Layer.merge(SinkLive, Redis.layerClient({ url: server.url }))))
      )
      expect(elapsed).toBeLessThan(1_000)
    } finally {
      direct.disconnect()
      await server.stop()
    }
  }, 20_000)

  it("a full stream refuses appends with StreamFull (whenFull: fail); nothing accepted is trimmed", async () => {
    const Events = eventsTable(unique("dur_full"))
    const key = Durable.streamKey(Events, prefix)
    const layer = Durable.producer({ prefix, maxLength: 3, whenFull: "fail", flushSize: 10 }).pipe(
      Layer.provide(ClientLive)
    )
    const failures = await withLayer(layer, async (get) => {
      const flow = get<BatchFlow.BatchFlow>(BatchFlow.BatchFlow)
      const out = []
      for (let i = 0; i < 5; i++) {
        const rows = Array.from({ length: 10 }, (_, j) => ({ id: i * 10 + j, name: "x", amount: 1 }))
        out.push(...(await Effect.runPromise(flow.writeAll(Events, rows))))
      }
      return out
    })
    expect(failures.map((f) => f.reason)).toEqual(["stream_full", "stream_full"])
    const cause = failures[0]!.cause
    expect(cause).toBeInstanceOf(Durable.StreamFull)
    expect(cause).toMatchObject({ _tag: "StreamFull", stream: key, length: 3, maxLength: 3 })
    expect(failures[0]!.rows.map((r) => r.id)).toEqual(Array.from({ length: 10 }, (_, j) => 30 + j))
    expect(Number(await redis.call("xlen", key))).toBe(3)
  })

  it("a producer keeps at most flushSize × concurrency rows by default while Redis refuses its appends", async () => {
    // The stream is full and stays full: every append fails and backs off (for an hour), so each
    // batch taken waits in the target's retry backlog, which counts against bufferSize.
    const accepted = async (bufferSize: number | undefined) => {
      const Events = eventsTable(unique("dur_buf"))
      await redis.call("xadd", Durable.streamKey(Events, prefix), "*", "filler", "1")
      const layer = Durable.producer({
        prefix,
        maxLength: 1,
        flushSize: 5,
        concurrency: 2,
        flushInterval: "1 millis",
        retry: { maxAttempts: 5, backoffBase: "1 hour", maxBackoff: "1 hour" },
        closeTimeout: "50 millis",
        ...(bufferSize === undefined ? {} : { bufferSize })
      }).pipe(Layer.provide(ClientLive))
      return withLayer(layer, async (get) => {
        const flow = get<BatchFlow.BatchFlow>(BatchFlow.BatchFlow)
        let taken = 0
        for (let i = 0; i < 200; i++) {
          if (await Effect.runPromise(flow.trySubmit(Events, { id: i, name: "x", amount: 1 }))) taken++
          await sleep(2)
        }
        return taken
      })
    }
    // With bufferSize 10: submits stop once 10 rows wait in the backlog; at most 10 more can be in
    // the buffer and 2 × 5 in appends not yet failed (the flow's 10,000 would accept all 200).
    const byDefault = await accepted(undefined)
    expect(byDefault).toBeGreaterThanOrEqual(10)
    expect(byDefault).toBeLessThanOrEqual(30)
    // A bufferSize given is kept.
    expect(await accepted(60)).toBeGreaterThanOrEqual(60)
  })

  it("a worker refuses a target whose writes are not idempotent, unless allowDuplicates", async () => {
    const Plain = Table.make(unique("dur_plain"), { columns: Schema.Struct({ id: Schema.Number }) })
    const layer = (allowDuplicates: boolean) =>
      Durable.worker({ targets: [Plain], prefix, flow: Sink, allowDuplicates, block: "10 millis" }).pipe(
        Layer.provide(SinkLive),
        Layer.provide(ClientLive)
      )
    const refused = await Effect.runPromise(Effect.either(Effect.scoped(Layer.build(layer(false)))))
    expect(Either.isLeft(refused) && refused.left).toMatchObject({
      _tag: "DurableConfigError",
      field: "targets"
    })
    expect(Either.isLeft(refused) && refused.left.message).toContain("not idempotent")
    const allowed = await Effect.runPromise(Effect.either(Effect.scoped(Layer.build(layer(true)))))
    expect(Either.isRight(allowed)).toBe(true)
  })

  it("a producer warns when Redis runs without AOF", async () => {
    const logs: Array<string> = []
    const logger = Logger.replace(
      Logger.defaultLogger,
      Logger.make(({ message }) => logs.push(String(message)))
    )
    const layer = Durable.producer({ prefix }).pipe(Layer.provide(ClientLive), Layer.provide(logger))
    await withLayer(layer, async () => undefined)
    const appendonly = ((await redis.call("config", "get", "appendonly")) as Array<string>)[1]
    if (appendonly === "no") expect(logs.join("\n")).toContain("without AOF")
    else expect(logs.join("\n")).not.toContain("without AOF")
  })

  it("closing a worker finishes the entries it holds and acknowledges them", async () => {
    const name = await table("dur_close")
    const Events = eventsTable(name)
    const key = Durable.streamKey(Events, prefix)
    const rows = Array.from({ length: 3_000 }, (_, i) => ({ id: i, name: "x", amount: 1 }))
    await withLayer(
      Durable.producer({ prefix, flushSize: 100 }).pipe(Layer.provide(ClientLive)),
      async (get) => {
        await Effect.runPromise(get<BatchFlow.BatchFlow>(BatchFlow.BatchFlow).writeAll(Events, rows))
      }
    )
    expect(Number(await redis.call("xlen", key))).toBe(30)
    const layer = Durable.worker({
      targets: [Events],
      prefix,
      flow: Sink,
      block: "50 millis",
      count: 30
    }).pipe(Layer.provide(SinkLive), Layer.provide(ClientLive))
    // Closed as soon as it has read something: what it read is written and acknowledged, not left pending.
    const stats = await withLayer(layer, async (get) => {
      const worker = get<Durable.WorkerService>(Durable.Worker)
      await until(
        async () => (await Effect.runPromise(worker.stats)).read > 0,
        5_000,
        () => "nothing read"
      )
      return worker.stats
    }).then((s) => Effect.runPromise(s))
    const left = await backlog(redis, key)
    expect(left.pending).toBe(0)
    expect(stats.acked).toBe(stats.read)
    expect(await countRows(pool, name)).toBe(stats.rowsCommitted)
    expect(left.length).toBe(30 - stats.acked)
    const consumers = (await redis.call("xinfo", "consumers", key, "batchflow")) as Array<unknown>
    expect(consumers).toEqual([])
  })

  it("rows of a schema with transformations (DateTimeUtc, OptionFromNullOr) reach PostgreSQL as encoded, none dead-lettered", async () => {
    const full = unique("dur_transform")
    fx.dropAtEnd("table", full)
    await pool.query(`CREATE TABLE ${full} (id BIGINT PRIMARY KEY, at TEXT NOT NULL, note TEXT)`)
    const Events = Table.make(full, {
      columns: Schema.Struct({
        id: Schema.Number,
        at: Schema.DateTimeUtc,
        note: Schema.OptionFromNullOr(Schema.String)
      }),
      key: ["id"],
      conflict: Conflict.ignore
    })
    const key = Durable.streamKey(Events, prefix)
    const layer = Layer.mergeAll(
      Durable.producer({ prefix, flushSize: 100 }),
      Durable.worker({ targets: [Events], prefix, flow: Sink, block: "50 millis" }).pipe(
        Layer.provide(SinkLive)
      )
    ).pipe(Layer.provide(ClientLive))
    const base = Date.UTC(2026, 0, 2, 3, 4, 5)
    const rows = Array.from({ length: 200 }, (_, i) => ({
      id: i,
      at: DateTime.unsafeMake(base + i * 1000),
      note: i % 2 === 0 ? Option.some(`n${i}`) : Option.none()
    }))
    const stats = await withLayer(layer, async (get) => {
      const worker = get<Durable.WorkerService>(Durable.Worker)
      expect(
        await Effect.runPromise(get<BatchFlow.BatchFlow>(BatchFlow.BatchFlow).writeAll(Events, rows))
      ).toEqual([])
      await until(
        async () => (await backlog(redis, key)).pending === 0 && (await countRows(pool, full)) === 200,
        10_000,
        async () => `${await countRows(pool, full)} rows, ${JSON.stringify(await backlog(redis, key))}`
      )
      return Effect.runPromise(worker.stats)
    })
    expect(stats).toMatchObject({ acked: 2, rowsCommitted: 200, deadLettered: 0 })
    expect(Number(await redis.exists(Durable.deadLetterKey(Events, prefix)))).toBe(0)
    const { rows: stored } = await pool.query(
      `SELECT id, at, note FROM ${full} WHERE id IN (0, 1) ORDER BY id`
    )
    expect(stored).toEqual([
      { id: "0", at: "2026-01-02T03:04:05.000Z", note: "n0" },
      { id: "1", at: "2026-01-02T03:04:06.000Z", note: null }
    ])
  })

  it("an entry of a transforming schema round-trips through the codec as type-side rows; a row it refuses is invalid_row", () => {
    const T = Target.make("dur_codec_transform", {
      schema: Schema.Struct({
        at: Schema.DateTimeUtc,
        o: Schema.OptionFromNullOr(Schema.BigInt),
        d: Schema.BigDecimal
      })
    })
    const codec = codecOf(T)
    const rows = [
      {
        at: DateTime.unsafeMake("2026-01-02T03:04:05.678Z"),
        o: Option.some(2n ** 70n),
        d: BigDecimal.unsafeFromString("1.25")
      },
      { at: DateTime.unsafeMake(0), o: Option.none(), d: BigDecimal.unsafeFromString("-3") }
    ]
    const text = codec.encode(rows)
    expect(JSON.parse(text)).toEqual([
      { at: "2026-01-02T03:04:05.678Z", o: "1180591620717411303424", d: "1.25" },
      { at: "1970-01-01T00:00:00.000Z", o: null, d: "-3" }
    ])
    const back = Either.getOrThrow(codec.decode(text)) as typeof rows
    expect(back.map((r) => [DateTime.toEpochMillis(r.at), r.o, BigDecimal.format(r.d)])).toEqual([
      [Date.parse("2026-01-02T03:04:05.678Z"), Option.some(2n ** 70n), "1.25"],
      [0, Option.none(), "-3"]
    ])
    const refused = codec.decode('[{"at":"not a date","o":null,"d":"1"}]')
    expect(Either.isLeft(refused) && refused.left.reason).toBe("invalid_row")
    expect(Either.isLeft(refused) && refused.left.detail).not.toContain("not a date")
    expect(codec.decode("{nope")).toMatchObject({ left: { reason: "undecodable" } })
  })

  it("rows with Dates and bigints travel through an entry as the schema types them", () => {
    const T = Target.make("dur_codec", {
      schema: Schema.Struct({ at: Schema.DateFromSelf, n: Schema.BigIntFromSelf, s: Schema.String })
    })
    const codec = codecOf(T)
    const rows = [{ at: new Date("2026-01-02T03:04:05.678Z"), n: 2n ** 70n, s: "a" }]
    expect(Either.getOrThrow(codec.decode(codec.encode(rows)))).toEqual(rows)
    const P = eventsTable("dur_codec_plain")
    expect(codecOf(P).encode([{ id: 1, name: "a", amount: 2 }])).toBe('[{"id":1,"name":"a","amount":2}]')
  })
})

const chunk = (flat: ReadonlyArray<string>): Array<[string, string]> => {
  const out: Array<[string, string]> = []
  for (let i = 0; i + 1 < flat.length; i += 2) out.push([flat[i]!, flat[i + 1]!])
  return out
}
