/**
 * Helpers of the durable tests: plain pg and ioredis connections for setting up and asserting (what
 * is in the table, what is left in the stream and the group), and polling with a deadline. A
 * service that is down fails the tests loudly.
 */
import { Effect, Exit, Layer, Schema, Scope } from "effect"
import { Conflict, Table } from "effect-batchflow"
import { Redis as IORedis } from "ioredis"
import pg from "pg"

export const pgUrl = process.env.BATCHFLOW_PG_URL ?? "postgres://postgres@127.0.0.1:5432/test"
export const sharedRedisUrl = process.env.BATCHFLOW_REDIS_URL ?? "redis://127.0.0.1:6379"
/** The shared server's database for these tests (each test file has its own). */
export const DB = 13

export const pgPool = (max = 3): pg.Pool => {
  const pool = new pg.Pool({ connectionString: pgUrl, max })
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

/**
 * Builds `layer` in a scope of its own, runs `body` with its context (`get(Tag)`), then closes the
 * scope, whatever `body` did.
 */
export const withLayer = <ROut, E, A>(
  layer: Layer.Layer<ROut, E>,
  body: (get: <S>(tag: { readonly key: string } & { readonly Service: S }) => S) => Promise<A>
): Promise<A> =>
  Effect.runPromise(
    Effect.gen(function* () {
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(layer, scope)
      const get = <S>(tag: { readonly key: string }) => context.unsafeMap.get(tag.key) as S
      const result = yield* Effect.exit(Effect.promise(() => body(get as never)))
      yield* Scope.close(scope, Exit.void)
      return yield* result
    })
  )

/**
 * What a file of durable tests on the shared servers sets up and removes: a PostgreSQL pool checked
 * at once (a server that is down fails the file), an ioredis connection to its own database of the
 * shared Redis, a key prefix unique to the run, and the tables (and trigger functions) its tests
 * create, dropped at the end with every key under the prefix. Call `setUp` in `beforeAll` and
 * `tearDown` in `afterAll`.
 */
export const durableFixture = (name: string, db: number) => {
  const tables: Array<string> = []
  const functions: Array<string> = []
  const fixture = {
    prefix: unique(name),
    pool: undefined as unknown as pg.Pool,
    redis: undefined as unknown as IORedis,
    setUp: async (): Promise<void> => {
      fixture.pool = pgPool(4)
      await fixture.pool.query("SELECT 1").catch((cause) => {
        throw new Error(`PostgreSQL is not reachable at ${pgUrl} (these tests need it): ${String(cause)}`)
      })
      fixture.redis = await redisAt(sharedRedisUrl, db)
    },
    tearDown: async (): Promise<void> => {
      const { pool, redis } = fixture
      for (const table of tables) await pool?.query(`DROP TABLE IF EXISTS ${table}`)
      for (const fn of functions) await pool?.query(`DROP FUNCTION IF EXISTS ${fn}()`)
      if (redis !== undefined) {
        const keys = await redis.keys(`${fixture.prefix}*`)
        if (keys.length > 0) await redis.del(...keys)
        redis.disconnect()
      }
      await pool?.end()
    },
    /** A keyed table `(id, name, amount)` of its own, dropped at the end; `ddl` adds constraints. */
    table: async (tableName: string, ddl = ""): Promise<string> => {
      const full = unique(tableName)
      tables.push(full)
      await fixture.pool.query(
        `CREATE TABLE ${full} (id BIGINT PRIMARY KEY, name TEXT NOT NULL, amount INT NOT NULL ${ddl})`
      )
      return full
    },
    /** A table or function (a trigger's) a test made itself, to drop at the end. */
    dropAtEnd: (kind: "table" | "function", name: string): void => {
      ;(kind === "table" ? tables : functions).push(name)
    }
  }
  return fixture
}

/** The keyed `(id, name, amount)` table of `durableFixture().table`, as a target (`Conflict.ignore`). */
export const eventsTable = (name: string) =>
  Table.make(name, {
    columns: Schema.Struct({ id: Schema.Number, name: Schema.String, amount: Schema.Number }),
    key: ["id"],
    conflict: Conflict.ignore
  })
