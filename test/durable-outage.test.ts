/**
 * Durable mode through database failures, on real servers: the shared Redis (a database of its own,
 * a key prefix per run) and the shared PostgreSQL, reached by the workers through a fault proxy
 * (test/fault/proxy.ts) that refuses and cuts their connections for a few seconds: an outage several
 * times longer than `maxDeliveries × minIdle`. The shared server itself is never stopped.
 *
 * What they pin: an entry whose rows fail transiently stays with its worker and its rows are written
 * again (only those) until they are written, so an outage dead-letters nothing and counts no delivery;
 * the waiting entries take the worker's room, so it reads and claims no more meanwhile; rows with a
 * final failure still go to the dead-letter stream; a worker closed during an outage leaves its
 * entries pending for the next one. Each ends with a reconciliation: the rows the producer accepted
 * are the rows in the keyed table (each once) plus the dead letters, and nothing is left pending.
 */
import { PgClient } from "@effect/sql-pg"
import { Effect, Layer, Logger, Redacted } from "effect"
import { BatchFlow } from "effect-batchflow"
import * as Durable from "effect-batchflow/Durable"
import * as Postgres from "effect-batchflow/Postgres"
import * as Redis from "effect-batchflow/Redis"
import type { Redis as IORedis } from "ioredis"
import type pg from "pg"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import {
  backlog,
  countRows,
  durableFixture,
  eventsTable,
  pgUrl,
  sharedRedisUrl,
  sleep,
  until,
  withLayer
} from "./durable/helpers.js"
import { type FaultProxy, startProxy } from "./fault/proxy.js"

/** The shared Redis's database for this file (durable.test.ts has 13). */
const DB = 7
const GROUP = "batchflow"

class Sink extends BatchFlow.Tag("test/DurableOutageSink")<Sink>() {}

const ClientLive = Redis.layerClient({ url: sharedRedisUrl, db: DB })

const rowsOf = (from: number, count: number, poison: ReadonlySet<number> = new Set()) =>
  Array.from({ length: count }, (_, i) => ({
    id: from + i,
    name: `e${from + i}`,
    amount: poison.has(from + i) ? -1 : 1
  }))

/** Log lines (their messages), captured instead of printed. */
const capture = () => {
  const lines: Array<string> = []
  const layer = Logger.replace(
    Logger.defaultLogger,
    Logger.make(({ message }) => {
      lines.push(Array.isArray(message) ? message.map(String).join(" ") : String(message))
    })
  )
  return { lines, layer }
}

const run = <A>(effect: Effect.Effect<A, unknown>) => Effect.runPromise(effect as Effect.Effect<A>)

describe.sequential("durable mode through a database outage", () => {
  const fx = durableFixture("durable_outage", DB)
  const { prefix, table } = fx
  let pool: pg.Pool
  let redis: IORedis
  let proxy: FaultProxy
  let proxiedUrl: string

  beforeAll(async () => {
    await fx.setUp()
    pool = fx.pool
    redis = fx.redis
    const url = new URL(pgUrl)
    proxy = await startProxy(Number(url.port || 5432))
    url.host = `127.0.0.1:${proxy.port}`
    proxiedUrl = url.toString()
  })

  afterAll(async () => {
    await proxy?.close()
    await fx.tearDown()
  })

  /** The workers' flow, to PostgreSQL through the proxy; its own retries give up quickly. */
  const sinkThroughProxy = () =>
    Sink.layer({
      executors: [Postgres.executor()],
      flushSize: 500,
      flushInterval: "10 millis",
      retry: { maxAttempts: 2, backoffBase: "20 millis", maxBackoff: "50 millis" },
      timeout: "2 seconds"
    }).pipe(
      Layer.provide(
        PgClient.layer({ url: Redacted.make(proxiedUrl), maxConnections: 2, connectTimeout: "1 second" })
      )
    )

  const outage = {
    start: () => {
      proxy.refuse()
      proxy.cut({ reset: true })
    },
    end: () => proxy.pass()
  }

  /** Pending entries of the group: id, consumer, deliveries. */
  const pendingEntries = async (key: string) =>
    (
      (await redis.call("xpending", key, GROUP, "-", "+", 1000)) as Array<[string, string, number, number]>
    ).map(([id, consumer, , deliveries]) => ({ id, consumer, deliveries: Number(deliveries) }))

  const deadLetters = async (key: string) =>
    ((await redis.call("xrange", key, "-", "+")) as Array<[string, Array<string>]>).map(([, fields]) => {
      const record: Record<string, string> = {}
      for (let i = 0; i + 1 < fields.length; i += 2) record[fields[i]!] = fields[i + 1]!
      return record
    })

  /** A scenario's target on table `name`, with its stream and dead-letter stream. */
  const target = (name: string) => {
    const Events = eventsTable(name)
    return { Events, key: Durable.streamKey(Events, prefix), deadKey: Durable.deadLetterKey(Events, prefix) }
  }

  /** What the table holds: its ids in order and their count (the id is the primary key). */
  const idsIn = async (name: string) =>
    (await pool.query(`SELECT id FROM ${name} ORDER BY id`)).rows.map((r: { id: string }) => Number(r.id))

  it("an outage longer than maxDeliveries × minIdle dead-letters nothing: entries wait with their worker, which reads and claims no more, and every accepted row is written once after it", async () => {
    proxy.pass()
    const name = await table("dur_outage")
    const { Events, key, deadKey } = target(name)
    const logs = capture()
    // Room of the worker: max(concurrency × 2, count) = 4 entries.
    const capacity = 4
    const minIdleMillis = 400
    const maxDeliveries = 2
    const outageMillis = 3_000
    expect(outageMillis).toBeGreaterThan(3 * maxDeliveries * minIdleMillis)
    const layer = Layer.mergeAll(
      Durable.producer({
        prefix,
        flushSize: 100,
        flushInterval: "10 millis",
        maxLength: 25,
        whenFull: "fail"
      }).pipe(Layer.provide(capture().layer)),
      Durable.worker({
        targets: [Events],
        prefix,
        flow: Sink,
        consumer: "outage-w",
        block: "50 millis",
        concurrency: 2,
        count: 2,
        minIdle: `${minIdleMillis} millis`,
        maxDeliveries,
        retryBackoff: "50 millis",
        maxRetryBackoff: "400 millis"
      }).pipe(Layer.provide(sinkThroughProxy()), Layer.provide(logs.layer))
    ).pipe(Layer.provide(ClientLive))

    const refused = new Set<number>()
    const during = { maxHeld: 0, maxDeliveries: 0, claimed: 0, ackedAtStart: 0, ackedAtEnd: 0, retried: 0 }
    let crashedIds: Array<string> = []
    const stats = await withLayer(layer, async (get) => {
      const flow = get<BatchFlow.BatchFlow>(BatchFlow.BatchFlow)
      const worker = get<Durable.WorkerService>(Durable.Worker)
      // Before: 1,000 rows (10 entries); the outage starts while the worker writes them.
      expect(await run(flow.writeAll(Events, rowsOf(0, 1_000)))).toEqual([])
      await until(
        async () => (await countRows(pool, name)) > 0,
        10_000,
        () => "nothing written before the outage"
      )
      outage.start()
      const startedAt = Date.now()
      // During: 3,000 rows more (30 entries). Redis takes them up to maxLength (25 entries unacknowledged),
      // the producer refuses the rest with StreamFull.
      for (const failure of await run(flow.writeAll(Events, rowsOf(1_000, 3_000)))) {
        expect(failure.reason).toBe("stream_full")
        for (const row of failure.rows) refused.add(row.id)
      }
      // A consumer that dies holding 2 entries: idle after minIdle, but the worker has no room to claim them.
      const crashed = (await redis.call(
        "xreadgroup",
        "GROUP",
        GROUP,
        "crashed",
        "COUNT",
        2,
        "STREAMS",
        key,
        ">"
      )) as Array<[string, Array<[string, unknown]>]>
      crashedIds = crashed[0]![1].map(([id]) => id)
      expect(crashedIds.length).toBe(2)
      await sleep(500)
      during.ackedAtStart = (await run(worker.stats)).acked
      while (Date.now() - startedAt < outageMillis) {
        const pending = await pendingEntries(key)
        const mine = pending.filter((p) => p.consumer === "outage-w")
        during.maxHeld = Math.max(during.maxHeld, mine.length)
        for (const p of mine) during.maxDeliveries = Math.max(during.maxDeliveries, p.deliveries)
        await sleep(100)
      }
      const now = await run(worker.stats)
      during.ackedAtEnd = now.acked
      during.claimed = now.claimed
      during.retried = now.retried
      // The dead consumer's entries are still its own: not claimed by a worker without room.
      const stillCrashed = (await pendingEntries(key))
        .filter((p) => p.consumer === "crashed")
        .map((p) => p.id)
      expect(stillCrashed.sort()).toEqual([...crashedIds].sort())
      expect(Number(await redis.exists(deadKey))).toBe(0)
      outage.end()
      const accepted = 4_000 - refused.size
      await until(
        // The worker's own count too: it counts an entry once Redis has answered the settle.
        async () =>
          (await countRows(pool, name)) === accepted &&
          (await backlog(redis, key)).pending === 0 &&
          (await run(worker.stats)).acked === accepted / 100,
        30_000,
        async () =>
          `${await countRows(pool, name)} of ${accepted} rows, ${JSON.stringify(await backlog(redis, key))}, ${JSON.stringify(await run(worker.stats))}`
      )
      return run(worker.stats)
    })

    // The producer refused whole entries once 25 were unacknowledged (none acknowledged meanwhile).
    expect(refused.size).toBeGreaterThanOrEqual(500)
    expect(refused.size % 100).toBe(0)
    // While the database was down: nothing settled, the entries waited (no delivery counted), the
    // worker held no more than its room, and claimed nothing.
    expect(during.ackedAtEnd).toBe(during.ackedAtStart)
    expect(during.maxHeld).toBeGreaterThan(0)
    expect(during.maxHeld).toBeLessThanOrEqual(capacity)
    expect(during.maxDeliveries).toBe(1)
    expect(during.claimed).toBe(0)
    expect(during.retried).toBeGreaterThan(capacity)
    // Reconciliation: accepted = in the table, each once (+ 0 dead letters); nothing pending or left.
    const expected = Array.from({ length: 4_000 }, (_, id) => id).filter((id) => !refused.has(id))
    expect(await idsIn(name)).toEqual(expected)
    expect(Number(await redis.exists(deadKey))).toBe(0)
    expect(await backlog(redis, key)).toEqual({ length: 0, pending: 0 })
    expect(stats).toMatchObject({
      claimed: 2,
      acked: expected.length / 100,
      rowsCommitted: expected.length,
      deadLettered: 0,
      returned: 0,
      lost: 0
    })
    expect(stats.read).toBe(expected.length / 100 - 2)
    // Logged: each entry's first transient failure, then at most one line per 5 s; and the recovery.
    const first = logs.lines.filter((l) => l.includes("not written this time"))
    const periodic = logs.lines.filter((l) => l.includes("still wait to be written again"))
    expect(first.length).toBeGreaterThan(0)
    expect(first.length).toBeLessThanOrEqual(capacity * 3)
    expect(periodic.length).toBeLessThanOrEqual(2)
    expect(first.length + periodic.length).toBeLessThan(stats.retried)
    expect(logs.lines.some((l) => l.includes("writes succeed again"))).toBe(true)
  }, 60_000)

  it("a row with a final failure among rows that fail transiently is dead-lettered with its reason; the others are written once, only the failed ones again", async () => {
    // PostgreSQL itself decides: a CHECK refuses row 3; a transaction holding row 80 makes the
    // statement with it time out (statement_timeout, retryable) until it rolls back. A trigger
    // records every row of every committed INSERT, so a committed row written again shows twice.
    const name = await table("dur_mixed", ", CHECK (amount >= 0)")
    const audit = `${name}_audit`
    fx.dropAtEnd("table", audit)
    fx.dropAtEnd("function", audit)
    await pool.query(`CREATE TABLE ${audit} (id BIGINT NOT NULL)`)
    await pool.query(
      `CREATE FUNCTION ${audit}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO ${audit} VALUES (NEW.id); RETURN NEW; END $$`
    )
    await pool.query(
      `CREATE TRIGGER ${audit} BEFORE INSERT ON ${name} FOR EACH ROW EXECUTE FUNCTION ${audit}()`
    )
    const { Events, key, deadKey } = target(name)
    const blocker = await pool.connect()
    let blocking = true
    try {
      await blocker.query("BEGIN")
      await blocker.query(`INSERT INTO ${name} (id, name, amount) VALUES (80, 'blocker', 1)`)
      const DirectSink = Sink.layer({
        executors: [Postgres.executor()],
        flushSize: 50,
        flushInterval: "10 millis",
        retry: { maxAttempts: 2, backoffBase: "20 millis", maxBackoff: "50 millis" },
        timeout: "300 millis"
      }).pipe(Layer.provide(PgClient.layer({ url: Redacted.make(pgUrl), maxConnections: 4 })))
      const layer = Layer.mergeAll(
        Durable.producer({ prefix, flushSize: 100 }),
        Durable.worker({
          targets: [Events],
          prefix,
          flow: Sink,
          block: "50 millis",
          minIdle: "300 millis",
          maxDeliveries: 1,
          retryBackoff: "50 millis",
          maxRetryBackoff: "200 millis"
        }).pipe(Layer.provide(DirectSink), Layer.provide(capture().layer))
      ).pipe(Layer.provide(ClientLive))
      const stats = await withLayer(layer, async (get) => {
        const flow = get<BatchFlow.BatchFlow>(BatchFlow.BatchFlow)
        const worker = get<Durable.WorkerService>(Durable.Worker)
        // One entry of 100 rows.
        expect(await run(flow.writeAll(Events, rowsOf(0, 100, new Set([3]))))).toEqual([])
        await until(
          async () => (await run(worker.stats)).retried >= 2,
          10_000,
          async () => JSON.stringify(await run(worker.stats))
        )
        // Held for 1.5 s: several times maxDeliveries × minIdle.
        await sleep(1_500)
        const waiting = await run(worker.stats)
        expect(waiting).toMatchObject({ acked: 0, claimed: 0, deadLettered: 0 })
        expect((await pendingEntries(key)).map((p) => p.deliveries)).toEqual([1])
        await blocker.query("ROLLBACK")
        blocking = false
        await until(
          async () => (await backlog(redis, key)).pending === 0 && (await run(worker.stats)).acked === 1,
          10_000,
          async () =>
            `${JSON.stringify(await backlog(redis, key))}, ${JSON.stringify(await run(worker.stats))}`
        )
        return run(worker.stats)
      })
      // Reconciliation: 100 accepted = 99 in the table + 1 dead letter.
      expect(await idsIn(name)).toEqual(Array.from({ length: 100 }, (_, id) => id).filter((id) => id !== 3))
      const dead = await deadLetters(deadKey)
      expect(dead.length).toBe(1)
      expect(dead[0]).toMatchObject({ reason: "check_violation", count: "1", deliveries: "1" })
      expect((JSON.parse(dead[0]!.rows!) as Array<{ id: number }>).map((r) => r.id)).toEqual([3])
      // Every row committed once: the rows committed before the retries were not written again.
      const { rows: twice } = await pool.query(
        `SELECT id, count(*)::int AS n FROM ${audit} GROUP BY id HAVING count(*) <> 1`
      )
      expect(twice).toEqual([])
      expect(Number((await pool.query(`SELECT count(*)::int AS n FROM ${audit}`)).rows[0].n)).toBe(99)
      expect(stats).toMatchObject({
        read: 1,
        claimed: 0,
        acked: 1,
        rowsCommitted: 99,
        deadLettered: 1,
        deadLetteredRows: 1,
        returned: 0
      })
      expect(stats.retried).toBeGreaterThanOrEqual(2)
      expect(await backlog(redis, key)).toEqual({ length: 0, pending: 0 })
    } finally {
      if (blocking) await blocker.query("ROLLBACK").catch(() => undefined)
      blocker.release()
    }
  }, 60_000)

  it("a worker closed while its entries wait out an outage leaves them pending, unsettled; the next worker claims and writes them", async () => {
    proxy.pass()
    const name = await table("dur_outage_close")
    const { Events, key, deadKey } = target(name)
    const workerLayer = (consumer: string) =>
      Durable.worker({
        targets: [Events],
        prefix,
        flow: Sink,
        consumer,
        block: "50 millis",
        concurrency: 2,
        count: 2,
        minIdle: "400 millis",
        maxDeliveries: 2,
        retryBackoff: "50 millis",
        maxRetryBackoff: "400 millis",
        closeTimeout: "5 seconds"
      }).pipe(Layer.provide(sinkThroughProxy()), Layer.provide(capture().layer), Layer.provide(ClientLive))
    const produce = () =>
      withLayer(Durable.producer({ prefix, flushSize: 100 }).pipe(Layer.provide(ClientLive)), async (get) => {
        const flow = get<BatchFlow.BatchFlow>(BatchFlow.BatchFlow)
        expect(await run(flow.writeAll(Events, rowsOf(0, 1_000)))).toEqual([])
      })
    let closing = 0
    // Started while the database answers (its client checks it), then the outage, then the rows.
    const first = await withLayer(workerLayer("a"), async (get) => {
      const worker = get<Durable.WorkerService>(Durable.Worker)
      outage.start()
      await produce()
      await until(
        async () => (await run(worker.stats)).retried >= 4,
        10_000,
        async () => JSON.stringify(await run(worker.stats))
      )
      closing = Date.now()
      return worker.stats
    }).then(run)
    const closedIn = Date.now() - closing
    // Closing did not wait for the database: the waiting entries were given back at once.
    expect(closedIn).toBeLessThan(2_000)
    expect(first.acked).toBe(0)
    expect(first.returned).toBe(first.read)
    const pending = await pendingEntries(key)
    expect(pending.length).toBe(first.read)
    expect(pending.every((p) => p.consumer === "a" && p.deliveries === 1)).toBe(true)
    // The consumer stays in the group while it has pending entries.
    const consumers = (await redis.call("xinfo", "consumers", key, GROUP)) as Array<Array<unknown>>
    expect(consumers.map((c) => c[1])).toContain("a")
    expect(Number(await redis.exists(deadKey))).toBe(0)
    outage.end()
    const second = await withLayer(workerLayer("b"), async (get) => {
      const worker = get<Durable.WorkerService>(Durable.Worker)
      await until(
        async () =>
          (await countRows(pool, name)) === 1_000 &&
          (await backlog(redis, key)).pending === 0 &&
          (await run(worker.stats)).acked === 10,
        20_000,
        async () => `${await countRows(pool, name)} rows, ${JSON.stringify(await run(worker.stats))}`
      )
      return run(worker.stats)
    })
    // Claimed once (a second delivery, within maxDeliveries) and written.
    expect(second).toMatchObject({ claimed: first.returned, deadLettered: 0, returned: 0 })
    expect(second.read + second.claimed).toBe(10)
    expect(await idsIn(name)).toEqual(Array.from({ length: 1_000 }, (_, id) => id))
    expect(Number(await redis.exists(deadKey))).toBe(0)
    expect(await backlog(redis, key)).toEqual({ length: 0, pending: 0 })
  }, 60_000)
})
