/**
 * Helpers of the durable tests: plain pg and ioredis connections for setting up and asserting (what
 * is in the table, what is left in the stream and the group), and polling with a deadline. A
 * service that is down fails the tests loudly.
 */
import { Redis as IORedis } from "ioredis"
import pg from "pg"

export const pgUrl = process.env.BATCHFLOW_PG_URL ?? "postgres://postgres@127.0.0.1:5432/test"
export const sharedRedisUrl = process.env.BATCHFLOW_REDIS_URL ?? "redis://127.0.0.1:6379"
/** The shared server's database for these tests (each test file has its own). */
export const DB = 13

export const pgPool = (): pg.Pool => {
  const pool = new pg.Pool({ connectionString: pgUrl, max: 3 })
  pool.on("error", () => undefined)
  return pool
}

export const redisAt = async (url: string, db = 0): Promise<IORedis> => {
  const redis = new IORedis(url, {
    db,
    lazyConnect: true,
    retryStrategy: () => null,
    maxRetriesPerRequest: 0
  })
  redis.on("error", () => undefined)
  try {
    await redis.connect()
  } catch (cause) {
    throw new Error(`Redis is not reachable at ${url} (these tests need it): ${String(cause)}`)
  }
  return redis
}

export const sleep = (millis: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, millis))

/** Polls `check` until it returns true, at most `timeoutMs`; then throws with `describe()`. */
export const until = async (
  check: () => Promise<boolean>,
  timeoutMs: number,
  describe: () => Promise<string> | string
): Promise<void> => {
  const deadline = Date.now() + timeoutMs
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms: ${await describe()}`)
    await sleep(50)
  }
}

/** Entries in the stream and entries pending in the group (0 and 0: everything acknowledged). */
export const backlog = async (
  redis: IORedis,
  key: string,
  group = "batchflow"
): Promise<{ length: number; pending: number }> => {
  const length = Number(await redis.call("xlen", key))
  const summary = (await redis.call("xpending", key, group).catch(() => [0])) as Array<unknown>
  return { length, pending: Number(summary[0] ?? 0) }
}

export const countRows = async (pool: pg.Pool, table: string): Promise<number> =>
  Number((await pool.query(`SELECT count(*)::int AS n FROM ${table}`)).rows[0].n)

/** Unique per run, so that parallel runs and earlier leftovers never meet. */
export const unique = (name: string): string => `${name}_${process.pid}_${Date.now().toString(36)}`
