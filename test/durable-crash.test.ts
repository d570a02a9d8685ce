/**
 * Durable mode under crashes, with producers and workers as processes of their own (test/durable/),
 * a private Redis (AOF, fsync at every write: what it acknowledged survives its crash) and the shared
 * PostgreSQL (a keyed table per scenario, Conflict.ignore). After each scenario: every row a producer
 * had acknowledged is in the table (none missing, the exact count; the id is the primary key, so
 * each once); the stream is empty and nothing is pending.
 */
import pg from "pg"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type Child, startChild } from "./durable/children.js"
import { backlog, pgUrl, redisAt, sleep, unique, until } from "./durable/helpers.js"
import { type PrivateRedis, startRedis } from "./fault/servers.js"

const GROUP = "batchflow"

describe.sequential("durable mode: crashes", () => {
  let redis: PrivateRedis
  let pool: pg.Pool
  const children: Array<Child> = []
  const tables: Array<string> = []

  beforeAll(async () => {
    pool = new pg.Pool({ connectionString: pgUrl, max: 3 })
    pool.on("error", () => undefined)
    await pool.query("SELECT 1").catch((cause) => {
      throw new Error(`PostgreSQL is not reachable at ${pgUrl} (these tests need it): ${String(cause)}`)
    })
    redis = await startRedis({ appendonly: true })
  }, 60_000)

  afterAll(async () => {
    for (const child of children) child.kill("SIGKILL")
    for (const table of tables) await pool?.query(`DROP TABLE IF EXISTS ${table}`)
    await pool?.end()
    await redis?.stop()
  }, 60_000)

  const scenario = async (name: string) => {
    const table = unique(name)
    tables.push(table)
    await pool.query(`CREATE TABLE ${table} (id BIGINT PRIMARY KEY, name TEXT NOT NULL, amount INT NOT NULL)`)
    const prefix = `crash:${table}`
    const key = `${prefix}:${table}`
    const worker = (consumer: string, minIdleMs = 1_000) => {
      const child = startChild("test/durable/worker.ts", {
        REDIS_URL: redis.url,
        PG_URL: pgUrl,
        TABLE: table,
        PREFIX: prefix,
        MIN_IDLE_MS: String(minIdleMs),
        CONSUMER: consumer
      })
      children.push(child)
      return child
    }
    const producer = (from: number, count: number, batch = 500, pauseMs = 0) => {
      const child = startChild("test/durable/producer.ts", {
        REDIS_URL: redis.url,
        TABLE: table,
        PREFIX: prefix,
        FROM: String(from),
        COUNT: String(count),
        BATCH: String(batch),
        PAUSE_MS: String(pauseMs)
      })
      children.push(child)
      return child
    }
    /** The ids a producer printed as acknowledged. */
    const ackedIds = (child: Child): Array<number> =>
      child
        .lines()
        .filter((l) => l.startsWith("acked "))
        .flatMap((l) => {
          const [, first, last] = l.split(" ").map(Number)
          return Array.from({ length: last! - first! + 1 }, (_, i) => first! + i)
        })
    /** Rows in the table, and how many of them have an id outside [from, to). */
    const inTable = async (from: number, to: number): Promise<{ n: number; outside: number }> =>
      (
        await pool.query(
          `SELECT count(*)::int AS n, count(*) FILTER (WHERE id < $1 OR id >= $2)::int AS outside FROM ${table}`,
          [from, to]
        )
      ).rows[0]
    const missing = async (ids: ReadonlyArray<number>): Promise<number> =>
      Number(
        (
          await pool.query(
            `SELECT count(*)::int AS n FROM unnest($1::bigint[]) AS a(id) WHERE NOT EXISTS (SELECT 1 FROM ${table} t WHERE t.id = a.id)`,
            [ids]
          )
        ).rows[0].n
      )
    const direct = async () => redisAt(redis.url)
    /** Waits until every id is in the table and the stream and group are empty. */
    const drained = async (ids: ReadonlyArray<number>, timeoutMs: number) => {
      const r = await direct()
      try {
        await until(
          async () =>
            (await missing(ids)) === 0 &&
            JSON.stringify(await backlog(r, key, GROUP)) === '{"length":0,"pending":0}',
          timeoutMs,
          async () =>
            `${await missing(ids)} of ${ids.length} acknowledged rows missing; stream ${JSON.stringify(await backlog(r, key, GROUP))}`
        )
      } finally {
        r.disconnect()
      }
    }
    const stopWorker = async (child: Child) => {
      child.kill("SIGTERM")
      expect(await child.exited, child.output()).toBe(0)
      const final = child.lines().find((l) => l.startsWith('{"final"'))
      return (JSON.parse(final!) as { final: Record<string, number> }).final
    }
    /** The table holds exactly `ids` (the id is its primary key: each at most once). */
    const holdsExactly = async (ids: ReadonlyArray<number>) => {
      expect(await missing(ids)).toBe(0)
      const { n } = await inTable(0, Number.MAX_SAFE_INTEGER)
      expect(n).toBe(new Set(ids).size)
    }
    return {
      table,
      key,
      worker,
      producer,
      ackedIds,
      inTable,
      missing,
      holdsExactly,
      drained,
      stopWorker,
      direct
    }
  }

  it("a worker killed mid-batch: another claims its entries after minIdle; every row once, nothing pending", async () => {
    const s = await scenario("dur_kill_worker")
    const p = s.producer(0, 20_000)
    expect(await p.exited, p.output()).toBe(0)
    const acked = s.ackedIds(p)
    expect(acked.length).toBe(20_000)
    // The table is locked: the first worker's inserts wait, so it is killed holding entries mid-write.
    const lock = await pool.connect()
    try {
      await lock.query("BEGIN")
      await lock.query(`LOCK TABLE ${s.table} IN ACCESS EXCLUSIVE MODE`)
      const a = s.worker("a")
      await a.line(/^ready$/)
      const r = await s.direct()
      let held = 0
      await until(
        async () => {
          const consumers = (await r.call("xpending", s.key, GROUP)) as [
            number,
            string,
            string,
            Array<[string, string]>
          ]
          held = Number(consumers[3]?.find(([name]) => name === "a")?.[1] ?? 0)
          return held > 0
        },
        10_000,
        () => "worker a holds nothing"
      )
      r.disconnect()
      a.kill("SIGKILL")
      expect(await a.exited).toBe("SIGKILL")
      console.log(`worker a killed holding ${held} entries`)
    } finally {
      await lock.query("ROLLBACK").catch(() => undefined)
      lock.release()
    }
    const killedAt = Date.now()
    const b = s.worker("b", 1_000)
    await s.drained(acked, 20_000)
    console.log(`handover: all rows in the table ${Date.now() - killedAt} ms after the kill (minIdle 1 s)`)
    const stats = await s.stopWorker(b)
    expect(stats.claimed).toBeGreaterThan(0)
    await s.holdsExactly(acked)
  }, 60_000)

  it("a producer killed after some acks: every row it acknowledged arrives", async () => {
    const s = await scenario("dur_kill_producer")
    const w = s.worker("w")
    await w.line(/^ready$/)
    const p = s.producer(0, 200_000, 500, 5)
    await p.line(/^acked 4500 /)
    p.kill("SIGKILL")
    await p.exited
    const acked = s.ackedIds(p)
    expect(acked.length).toBeGreaterThanOrEqual(5_000)
    await s.drained(acked, 20_000)
    await s.stopWorker(w)
    expect(await s.missing(acked)).toBe(0)
    // Rows appended but not yet acknowledged when it died may be there too (ids of the producer's
    // range, at most a few batches); nothing else.
    const { n, outside } = await s.inTable(0, 200_000)
    expect(outside).toBe(0)
    expect(n).toBeGreaterThanOrEqual(acked.length)
    expect(n).toBeLessThan(acked.length + 2_000)
  }, 60_000)

  it("Redis restarted (AOF on): acknowledged rows survive; a running worker reconnects and goes on", async () => {
    const s = await scenario("dur_restart")
    const p1 = s.producer(0, 10_000)
    expect(await p1.exited, p1.output()).toBe(0)
    const first = s.ackedIds(p1)
    expect(first.length).toBe(10_000)
    await redis.crash()
    await redis.start()
    const r = await s.direct()
    expect(Number(await r.call("xlen", s.key))).toBe(20)
    r.disconnect()
    const w = s.worker("w")
    await s.drained(first, 20_000)
    // Crashed again under the running worker: it reconnects and writes what comes after.
    await redis.crash()
    await sleep(300)
    await redis.start()
    const p2 = s.producer(10_000, 5_000)
    expect(await p2.exited, p2.output()).toBe(0)
    const second = s.ackedIds(p2)
    expect(second.length).toBe(5_000)
    await s.drained([...first, ...second], 20_000)
    await s.stopWorker(w)
    await s.holdsExactly([...first, ...second])
  }, 90_000)
})
