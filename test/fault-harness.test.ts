/**
 * Self-test of the fault harness (test/fault/) with the raw drivers, no BatchFlow: private servers start,
 * crash, restart with their committed data, and stop; the proxy's cut / black hole / refuse reach each
 * driver the way the harness documents; child scenarios are reported as exited or killed, and a child
 * that leaks a server gets it cleaned up by the 'exit' handler or the reaper.
 *
 * The error messages asserted here are the ones the engine's error classification sees from each driver.
 */
import { existsSync } from "node:fs"
import { Redis as IORedis } from "ioredis"
import * as mysql from "mysql2/promise"
import pg from "pg"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { runChild } from "./fault/child.js"
import { isAlive, sleep, waitFor } from "./fault/process.js"
import { type FaultProxy, startProxy } from "./fault/proxy.js"
import {
  type PrivateMariaDb,
  type PrivatePostgres,
  type PrivateRedis,
  startMariaDb,
  startPostgres,
  startRedis
} from "./fault/servers.js"

const SHARED_PORTS = [5432, 3306, 6379]
const HOOK_TIMEOUT = 60_000

/** Resolves "pending" when `promise` has not settled within `millis` (it is left running). */
const settledWithin = <A>(
  promise: Promise<A>,
  millis: number
): Promise<{ readonly value: A } | { readonly error: unknown } | "pending"> =>
  Promise.race([
    promise.then(
      (value) => ({ value }),
      (error: unknown) => ({ error })
    ),
    sleep(millis).then(() => "pending" as const)
  ])

/**
 * The first argument of the next `event`, at most `millis` later (a missing event fails the test instead
 * of hanging it). Not `events.once`: that one rejects on an 'error' event, which drivers emit on a cut.
 */
const eventWithin = (emitter: NodeJS.EventEmitter, event: string, millis = 5_000): Promise<unknown> =>
  new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emitter.off(event, onEvent)
      reject(new Error(`no '${event}' event within ${millis} ms`))
    }, millis)
    const onEvent = (value: unknown) => {
      clearTimeout(timer)
      resolve(value)
    }
    emitter.once(event, onEvent)
  })

describe.sequential("PostgreSQL: private cluster behind the proxy", () => {
  let server: PrivatePostgres
  let proxy: FaultProxy
  const clients: Array<pg.Client> = []

  const connect = async (port = proxy.port, connectionTimeoutMillis = 5_000): Promise<pg.Client> => {
    const client = new pg.Client({
      host: "127.0.0.1",
      port,
      user: "postgres",
      database: "test",
      connectionTimeoutMillis
    })
    // A connection error is also emitted as 'error'; unhandled, it would crash the test process.
    client.on("error", () => undefined)
    clients.push(client)
    await client.connect()
    return client
  }

  beforeAll(async () => {
    server = await startPostgres()
    proxy = await startProxy(server.port)
  }, HOOK_TIMEOUT)

  afterAll(async () => {
    for (const client of clients) await client.end().catch(() => undefined)
    await proxy?.close()
    await server?.stop()
  }, HOOK_TIMEOUT)

  it("runs on its own port with a `test` database, and a query works through the proxy", async () => {
    expect(SHARED_PORTS).not.toContain(server.port)
    expect(server.url).toBe(`postgres://postgres@127.0.0.1:${server.port}/test`)
    expect(await server.query("SELECT current_database() AS db")).toEqual([{ db: "test" }])
    const client = await connect()
    expect((await client.query("SELECT 1 + 1 AS two")).rows).toEqual([{ two: 2 }])
    expect(proxy.connections()).toBe(1)
  })

  it("cut(): the old connection fails with a connection error, a new one works", async () => {
    const client = await connect()
    await client.query("SELECT 1")
    const ended = eventWithin(client, "end")
    proxy.cut()
    expect(proxy.connections()).toBe(0)
    await ended
    await expect(client.query("SELECT 1")).rejects.toThrow(
      "Client has encountered a connection error and is not queryable"
    )
    const fresh = await connect()
    expect((await fresh.query("SELECT 2 AS n")).rows).toEqual([{ n: 2 }])
  })

  it("cut() during a query: the query fails with 'Connection terminated unexpectedly' (RST: ECONNRESET)", async () => {
    const fin = await connect()
    const finQuery = fin.query("SELECT pg_sleep(5)")
    await sleep(200)
    proxy.cut()
    await expect(finQuery).rejects.toThrow("Connection terminated unexpectedly")

    const rst = await connect()
    const rstQuery = rst.query("SELECT pg_sleep(5)")
    await sleep(200)
    proxy.cut({ reset: true })
    await expect(rstQuery).rejects.toMatchObject({ code: "ECONNRESET" })
  })

  it("blackhole(): a query gets no answer within 1 s and a new connection never completes", async () => {
    const client = await connect()
    proxy.blackhole()
    const query = client.query("SELECT 1")
    expect(await settledWithin(query, 1_000)).toBe("pending")
    // The connection is held open, not closed: nothing tells the client it is dead.
    expect(proxy.connections()).toBeGreaterThanOrEqual(1)
    // Abort: pg 8.23's end() destroys the socket when a query is active.
    await client.end()
    await expect(query).rejects.toThrow()

    await expect(connect(proxy.port, 500)).rejects.toThrow("timeout expired")
    proxy.pass()
    const fresh = await connect()
    expect((await fresh.query("SELECT 3 AS n")).rows).toEqual([{ n: 3 }])
  })

  it("refuse(): new connections are closed at once, open ones keep working", async () => {
    const open = await connect()
    proxy.refuse()
    await expect(connect()).rejects.toThrow("Connection terminated unexpectedly")
    expect((await open.query("SELECT 4 AS n")).rows).toEqual([{ n: 4 }])
    proxy.pass()
  })

  it("crash() then start(): rows committed before the crash are still there", async () => {
    await server.query("CREATE TABLE crash_probe (id INT PRIMARY KEY, v TEXT)")
    await server.query("INSERT INTO crash_probe SELECT g, 'v' || g FROM generate_series(1, 1000) g")
    const before = server.pid()
    expect(before).toBeDefined()
    await server.crash()
    expect(server.pid()).toBeUndefined()
    await expect(connect(server.port)).rejects.toMatchObject({ code: "ECONNREFUSED" })
    await server.start()
    expect(server.pid()).not.toBe(before)
    expect(await server.query("SELECT count(*)::int AS n, max(v) AS top FROM crash_probe")).toEqual([
      { n: 1000, top: "v999" }
    ])
    // The proxy reaches the restarted server on the same port.
    const client = await connect()
    expect((await client.query("SELECT count(*)::int AS n FROM crash_probe")).rows).toEqual([{ n: 1000 }])
  })
})

describe.sequential("MariaDB: private instance behind the proxy", () => {
  let server: PrivateMariaDb
  let proxy: FaultProxy
  const connections: Array<mysql.Connection> = []

  const connect = async (port = proxy.port): Promise<mysql.Connection> => {
    const connection = await mysql.createConnection({
      host: "127.0.0.1",
      port,
      user: "root",
      database: "test",
      connectTimeout: 5_000
    })
    connection.on("error", () => undefined)
    connections.push(connection)
    return connection
  }

  beforeAll(async () => {
    server = await startMariaDb()
    proxy = await startProxy(server.port)
  }, HOOK_TIMEOUT)

  afterAll(async () => {
    for (const connection of connections) connection.destroy()
    await proxy?.close()
    await server?.stop()
  }, HOOK_TIMEOUT)

  it("runs on its own port with a `test` database, and a query works through the proxy", async () => {
    expect(SHARED_PORTS).not.toContain(server.port)
    expect(server.url).toBe(`mysql://root@127.0.0.1:${server.port}/test`)
    expect(await server.query("SELECT DATABASE() AS db")).toEqual([{ db: "test" }])
    const connection = await connect()
    const [rows] = await connection.query("SELECT 1 + 1 AS two")
    expect(rows).toEqual([{ two: 2 }])
  })

  it("cut(): PROTOCOL_CONNECTION_LOST, then the old connection refuses new commands", async () => {
    const connection = await connect()
    const lost = eventWithin(connection, "error")
    proxy.cut()
    expect(await lost).toMatchObject({ code: "PROTOCOL_CONNECTION_LOST", fatal: true })
    await expect(connection.query("SELECT 1")).rejects.toThrow(
      "Can't add new command when connection is in closed state"
    )
    const fresh = await connect()
    const [rows] = await fresh.query("SELECT 2 AS n")
    expect(rows).toEqual([{ n: 2 }])
  })

  it("blackhole(): a query gets no answer within 1 s", async () => {
    const connection = await connect()
    proxy.blackhole()
    const query = connection.query("SELECT 1")
    expect(await settledWithin(query, 1_000)).toBe("pending")
    connection.destroy()
    proxy.pass()
    const fresh = await connect()
    const [rows] = await fresh.query("SELECT 3 AS n")
    expect(rows).toEqual([{ n: 3 }])
  })

  it("crash() then start(): rows committed before the crash are still there", async () => {
    await server.query("CREATE TABLE crash_probe (id INT PRIMARY KEY, v VARCHAR(20)) ENGINE=InnoDB")
    await server.query(
      "INSERT INTO crash_probe SELECT seq, CONCAT('v', seq) FROM seq_1_to_1000" // MariaDB's SEQUENCE engine
    )
    const before = server.pid()
    await server.crash()
    expect(server.pid()).toBeUndefined()
    await expect(connect(server.port)).rejects.toMatchObject({ code: "ECONNREFUSED" })
    await server.start()
    expect(server.pid()).not.toBe(before)
    expect(await server.query("SELECT COUNT(*) AS n FROM crash_probe")).toEqual([{ n: 1000 }])
  })
})

describe.sequential("Redis: private instance (AOF) behind the proxy", () => {
  let server: PrivateRedis
  let proxy: FaultProxy
  const clients: Array<IORedis> = []

  /** No reconnection: with it, ioredis would hide a cut by reconnecting and resending. */
  const connect = async (port = proxy.port): Promise<IORedis> => {
    const redis = new IORedis({
      host: "127.0.0.1",
      port,
      lazyConnect: true,
      connectTimeout: 5_000,
      retryStrategy: () => null,
      maxRetriesPerRequest: 0
    })
    redis.on("error", () => undefined)
    clients.push(redis)
    await redis.connect()
    return redis
  }

  beforeAll(async () => {
    server = await startRedis({ appendonly: true })
    proxy = await startProxy(server.port)
  }, HOOK_TIMEOUT)

  afterAll(async () => {
    for (const redis of clients) redis.disconnect()
    await proxy?.close()
    await server?.stop()
  }, HOOK_TIMEOUT)

  it("runs on its own port, and a command works through the proxy", async () => {
    expect(SHARED_PORTS).not.toContain(server.port)
    expect(server.url).toBe(`redis://127.0.0.1:${server.port}`)
    const redis = await connect()
    expect(await redis.set("fh:k", "v")).toBe("OK")
    expect(await server.command("GET", "fh:k")).toBe("v")
  })

  it("cut(): commands on the old connection fail with 'Connection is closed.'", async () => {
    const redis = await connect()
    const closed = eventWithin(redis, "end")
    proxy.cut()
    await closed
    await expect(redis.get("fh:k")).rejects.toThrow("Connection is closed.")
    const fresh = await connect()
    expect(await fresh.get("fh:k")).toBe("v")
  })

  it("blackhole(): a command gets no answer within 1 s", async () => {
    const redis = await connect()
    proxy.blackhole()
    const reply = redis.get("fh:k")
    expect(await settledWithin(reply, 1_000)).toBe("pending")
    redis.disconnect()
    await expect(reply).rejects.toThrow("Connection is closed.")
    proxy.pass()
    const fresh = await connect()
    expect(await fresh.get("fh:k")).toBe("v")
  })

  it("crash() then start(): writes acknowledged before the crash are still there (appendfsync always)", async () => {
    for (let i = 0; i < 100; i++) await server.command("RPUSH", "fh:list", i)
    await server.crash()
    expect(server.pid()).toBeUndefined()
    await server.start()
    expect(await server.command("LLEN", "fh:list")).toBe(100)
  })
})

describe("runChild: scenarios in a child process", () => {
  it("a script that exits by itself: exitedByItself, its JSON line, src/ resolved through tsx", async () => {
    const result = await runChild("test/fault/scripts/exits.ts", {
      env: { FAULT_HARNESS_MARK: "marked" },
      timeoutMs: 20_000
    })
    expect(result.stderr).toBe("")
    expect(result).toMatchObject({ code: 0, signal: null, exitedByItself: true })
    expect(result.stdout.split("\n")[0]).toBe("starting")
    expect(result.json).toEqual({ tag: "object", postgresLayer: "function", mark: "marked" })
  })

  it("a script kept alive by setInterval: SIGKILLed at timeoutMs, exitedByItself false", async () => {
    // Long enough for tsx to start the script on a busy machine (~0.8 s idle, 3 s seen under load).
    const result = await runChild("test/fault/scripts/hangs.ts", { timeoutMs: 5_000 })
    expect(result).toMatchObject({ code: null, signal: "SIGKILL", exitedByItself: false })
    expect(result.json).toEqual({ started: true })
    expect(result.durationMs).toBeGreaterThanOrEqual(5_000)
    expect(result.durationMs).toBeLessThan(8_000)
  })

  it("a server leaked by a child that exits is killed by the 'exit' handler", async () => {
    const result = await runChild("test/fault/scripts/leaks-redis.ts", { args: ["exit"], timeoutMs: 20_000 })
    expect(result).toMatchObject({ code: 0, exitedByItself: true })
    const leaked = result.json as { pid: number; dir: string }
    expect(leaked.pid).toBeGreaterThan(0)
    // The handler sends SIGKILL synchronously; a zombie counts as gone.
    await waitFor(() => (isAlive(leaked.pid) ? undefined : true), {
      timeoutMs: 2_000,
      describe: () => `Redis ${leaked.pid} still runs`
    })
    expect(existsSync(leaked.dir)).toBe(false)
  })

  it("a server leaked by a child that is SIGKILLed is killed by the reaper", async () => {
    const result = await runChild("test/fault/scripts/leaks-redis.ts", { args: ["die"], timeoutMs: 20_000 })
    expect(result).toMatchObject({ signal: "SIGKILL", exitedByItself: true })
    const leaked = result.json as { pid: number; dir: string }
    expect(leaked.pid).toBeGreaterThan(0)
    // The reaper polls twice a second.
    await waitFor(() => (isAlive(leaked.pid) || existsSync(leaked.dir) ? undefined : true), {
      timeoutMs: 5_000,
      describe: () => `Redis ${leaked.pid} or ${leaked.dir} survived the test process`
    })
  })
})
