/**
 * Private PostgreSQL 15, MariaDB 10.11 and Redis 7 instances for fault tests: each on a free loopback
 * port, in its own temp directory, crashed / restarted / stopped by PID. Fault tests must never touch
 * the shared services on 5432 / 3306 / 6379, which other tests and benchmarks use at the same time.
 *
 * Start one instance per test file (`beforeAll`, hook timeout ~60 s) and `stop()` it in `afterAll`.
 * A start that fails throws with the server's log tail (a fault test fails loudly, it never skips).
 * If the teardown never runs, a process 'exit' handler and a detached reaper shell stop the server
 * (see process.ts).
 *
 * Durability is kept on (PostgreSQL fsync, InnoDB flush at every commit, Redis `appendfsync always`):
 * the crash tests check that what was committed before a kill is there after the restart.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs"
import { chown } from "node:fs/promises"
import * as net from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Redis as IORedis } from "ioredis"
import * as mysql from "mysql2/promise"
import pg from "pg"
import {
  GiveUp,
  type Guard,
  guard,
  isAlive,
  logTail,
  run,
  runSyncQuietly,
  shellQuote,
  signal,
  waitChildExit,
  waitExit,
  waitFor
} from "./process.js"

/** A free TCP port on 127.0.0.1, from the kernel (bind to port 0, read it, close). */
export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = net.createServer()
    server.unref()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo
      server.close(() => resolve(port))
    })
  })

/** What every private server offers. */
export interface PrivateServer {
  readonly port: number
  readonly url: string
  /** The instance's temp directory (data, socket, pid file, log); removed by `stop()`. */
  readonly dir: string
  /** The server's PID while it runs, `undefined` while it is down. */
  readonly pid: () => number | undefined
  /** Kills the server abruptly (no shutdown work): a crash. Committed data must survive it. */
  readonly crash: () => Promise<void>
  /** Starts it again on the same port and data, resolving once it answers queries. */
  readonly start: () => Promise<void>
  /** Stops it cleanly (falls back to SIGKILL) and removes its directory; safe to call twice. */
  readonly stop: () => Promise<void>
  /** The last lines of the server's log. */
  readonly log: (lines?: number) => string
  readonly [Symbol.asyncDispose]: () => Promise<void>
}

export interface PrivatePostgres extends PrivateServer {
  /** Runs `sql` on a fresh `pg` client connected straight to the server (never through a proxy). */
  readonly query: <R extends object = Record<string, unknown>>(
    sql: string,
    params?: ReadonlyArray<unknown>
  ) => Promise<Array<R>>
}

export interface PrivateMariaDb extends PrivateServer {
  /**
   * Runs `sql` on a fresh mysql2 connection straight to the server, in database `test`. Returns the rows
   * of a query that has rows and `[]` for statements without (DDL, INSERT…).
   */
  readonly query: <R extends object = Record<string, unknown>>(
    sql: string,
    params?: ReadonlyArray<unknown>
  ) => Promise<Array<R>>
}

export interface PrivateRedis extends PrivateServer {
  readonly appendonly: boolean
  /** Runs one command on a fresh ioredis connection straight to the server, e.g. `command("GET", "k")`. */
  readonly command: (name: string, ...args: ReadonlyArray<string | number | Buffer>) => Promise<unknown>
}

const START_TIMEOUT_MS = 30_000
const STOP_TIMEOUT_MS = 20_000
/** How often a first start is retried on a new port when the chosen one got taken in between. */
const PORT_ATTEMPTS = 3

const isAddressInUse = (log: string): boolean =>
  /address already in use|could not bind|bind on tcp/i.test(log)

// ---------------------------------------------------------------------------------------------------
// PostgreSQL

const pgBinDir = async (): Promise<string> => {
  const fromConfig = await run("pg_config", ["--bindir"], { timeoutMs: 10_000 }).then(
    ({ stdout }) => stdout.trim(),
    () => undefined
  )
  for (const dir of [fromConfig, "/usr/lib/postgresql/15/bin"]) {
    if (dir !== undefined && existsSync(join(dir, "initdb")) && existsSync(join(dir, "pg_ctl"))) return dir
  }
  throw new Error(
    "PostgreSQL server tools not found (no initdb/pg_ctl in `pg_config --bindir` or /usr/lib/postgresql/15/bin)"
  )
}

const osUser = async (name: string): Promise<{ uid: number; gid: number }> => {
  const uid = Number((await run("id", ["-u", name], { timeoutMs: 5_000 })).stdout.trim())
  const gid = Number((await run("id", ["-g", name], { timeoutMs: 5_000 })).stdout.trim())
  return { uid, gid }
}

/** Starts a throwaway PostgreSQL cluster with a database `test`, owned by the `postgres` OS user. */
export const startPostgres = async (): Promise<PrivatePostgres> => {
  const bin = await pgBinDir()
  const owner = await osUser("postgres")
  const dir = mkdtempSync(join(tmpdir(), "bf-fault-pg-"))
  const data = join(dir, "data")
  const logFile = join(dir, "pg.log")
  const pgCtl = join(bin, "pg_ctl")
  const asPostgres = (file: string, args: ReadonlyArray<string>, timeoutMs: number) =>
    run("runuser", ["-u", "postgres", "--", file, ...args], { timeoutMs })
  const postmasterPid = (): number | undefined => {
    try {
      const pid = Number(readFileSync(join(data, "postmaster.pid"), "utf8").split("\n")[0])
      return Number.isInteger(pid) && pid > 0 && isAlive(pid) ? pid : undefined
    } catch {
      return undefined
    }
  }
  const cleanup: Guard = guard({
    sync: () => {
      runSyncQuietly(
        "runuser",
        ["-u", "postgres", "--", pgCtl, "-D", data, "-m", "immediate", "stop"],
        10_000
      )
      rmSync(dir, { recursive: true, force: true })
    },
    shell: `runuser -u postgres -- ${shellQuote(pgCtl)} -D ${shellQuote(data)} -m immediate stop >/dev/null 2>&1; rm -rf ${shellQuote(dir)}`
  })
  let port = 0
  let stopped = false

  const pgStart = (): Promise<unknown> =>
    asPostgres(
      pgCtl,
      [
        "-D",
        data,
        "-l",
        logFile,
        "-w",
        "-t",
        String(START_TIMEOUT_MS / 1000),
        // Small shared memory for a fast start; fsync stays on (crash tests need committed rows on disk).
        "-o",
        `-p ${port} -k ${shellQuote(dir)} -c listen_addresses=127.0.0.1 -c shared_buffers=16MB -c max_connections=60 -c autovacuum=off`,
        "start"
      ],
      START_TIMEOUT_MS + 5_000
    ).catch((cause) => {
      throw new Error(
        `PostgreSQL did not start on port ${port}: ${String(cause)}\n--- log\n${logTail(logFile)}`
      )
    })

  const query = async <R extends object = Record<string, unknown>>(
    sql: string,
    params?: ReadonlyArray<unknown>,
    database = "test"
  ): Promise<Array<R>> => {
    const client = new pg.Client({
      host: "127.0.0.1",
      port,
      user: "postgres",
      database,
      connectionTimeoutMillis: 5_000,
      query_timeout: 30_000
    })
    client.on("error", () => undefined)
    try {
      await client.connect()
      const result = await client.query(sql, params === undefined ? undefined : [...params])
      return result.rows as Array<R>
    } finally {
      await client.end().catch(() => undefined)
    }
  }

  const stop = async (): Promise<void> => {
    if (stopped) return
    stopped = true
    const pid = postmasterPid()
    if (pid !== undefined) {
      await asPostgres(pgCtl, ["-D", data, "-m", "fast", "-t", "15", "stop"], STOP_TIMEOUT_MS).catch(
        () => undefined
      )
      if (!(await waitExit(pid, 2_000))) {
        signal(pid, "SIGKILL")
        await waitExit(pid, 5_000)
      }
    }
    cleanup.release()
    rmSync(dir, { recursive: true, force: true })
  }

  try {
    await chown(dir, owner.uid, owner.gid)
    await asPostgres(
      join(bin, "initdb"),
      ["-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--locale=C", "--no-instructions"],
      60_000
    )
    for (let attempt = 1; ; attempt++) {
      port = await freePort()
      try {
        await pgStart()
        break
      } catch (cause) {
        if (attempt >= PORT_ATTEMPTS || !isAddressInUse(logTail(logFile))) throw cause
      }
    }
    await query("CREATE DATABASE test", undefined, "postgres")
  } catch (cause) {
    await stop()
    throw cause
  }

  const url = `postgres://postgres@127.0.0.1:${port}/test`
  return {
    port,
    url,
    dir,
    pid: postmasterPid,
    crash: async () => {
      // Immediate shutdown: the postmaster SIGQUITs every backend, nothing is checkpointed; the next
      // start runs crash recovery from the WAL.
      await asPostgres(pgCtl, ["-D", data, "-m", "immediate", "-t", "15", "stop"], STOP_TIMEOUT_MS)
    },
    start: async () => {
      if (stopped) throw new Error("startPostgres: start() after stop()")
      if (postmasterPid() !== undefined) throw new Error(`PostgreSQL on port ${port} is already running`)
      await pgStart()
      await waitFor(() => query("SELECT 1").then(() => true), {
        timeoutMs: START_TIMEOUT_MS,
        describe: (e) => `PostgreSQL on port ${port} does not answer: ${String(e)}\n${logTail(logFile)}`
      })
    },
    stop,
    log: (lines) => logTail(logFile, lines),
    query: (sql, params) => query(sql, params),
    [Symbol.asyncDispose]: stop
  }
}

// ---------------------------------------------------------------------------------------------------
// Spawned servers (MariaDB, Redis): one detached child per run, its PID known at spawn

interface SpawnedServer {
  readonly child: () => ChildProcess | undefined
  readonly pid: () => number | undefined
  /** Spawns the server and waits until `ready` succeeds; throws with the log tail otherwise. */
  readonly launch: () => Promise<void>
  readonly kill: () => Promise<void>
  readonly terminate: () => Promise<void>
}

const spawnedServer = (options: {
  readonly name: string
  readonly command: string
  readonly args: () => ReadonlyArray<string>
  readonly logFile: string
  readonly ready: () => Promise<unknown>
}): SpawnedServer => {
  let current: ChildProcess | undefined
  const running = (): ChildProcess | undefined =>
    current !== undefined && current.exitCode === null && current.signalCode === null ? current : undefined
  const kill = async (): Promise<void> => {
    const child = running()
    if (child?.pid === undefined) return
    signal(child.pid, "SIGKILL")
    if (!(await waitChildExit(child, 10_000)))
      throw new Error(`${options.name} (pid ${child.pid}) survived SIGKILL`)
  }
  return {
    child: running,
    pid: () => running()?.pid,
    launch: async () => {
      if (running() !== undefined) throw new Error(`${options.name} is already running`)
      // Detached (own session, like `setsid`): a signal to the test's process group does not reach it,
      // and unref'd: it never keeps the test process alive. Its output goes to its own log file.
      const child = spawn(options.command, [...options.args()], { detached: true, stdio: "ignore" })
      current = child
      let spawnError: unknown
      child.on("error", (cause) => {
        spawnError = cause
      })
      child.unref()
      await waitFor(
        async () => {
          if (spawnError !== undefined)
            throw new GiveUp(`cannot spawn ${options.command}: ${String(spawnError)}`)
          if (running() !== child)
            throw new GiveUp(`it exited (code ${child.exitCode}, signal ${child.signalCode})`)
          await options.ready()
          return true
        },
        {
          timeoutMs: START_TIMEOUT_MS,
          describe: (e) =>
            `${options.name} did not become ready: ${String(e)}\n--- log\n${logTail(options.logFile)}`
        }
      ).catch(async (cause) => {
        // A server that never became ready must not outlive the failed start.
        await kill()
        throw cause
      })
    },
    kill,
    terminate: async () => {
      const child = running()
      if (child?.pid === undefined) return
      signal(child.pid, "SIGTERM")
      if (!(await waitChildExit(child, STOP_TIMEOUT_MS))) await kill()
    }
  }
}

/** An early exit that wrote "address in use" to its log: retry on another port. */
/**
 * What stops a server run as one spawned process with a pid file in `dir`: a guard that kills it
 * and removes `dir` if this process dies first (or only has time for a shell line), and a `stop`
 * that ends it, releases the guard and removes `dir` (once).
 */
const lifecycle = (
  server: SpawnedServer,
  dir: string,
  pidFile: string
): { readonly stop: () => Promise<void>; readonly stopped: () => boolean } => {
  let stopped = false
  const cleanup = guard({
    sync: () => {
      const pid = server.pid()
      if (pid !== undefined) signal(pid, "SIGKILL")
      rmSync(dir, { recursive: true, force: true })
    },
    shell: `[ -f ${shellQuote(pidFile)} ] && kill -9 "$(cat ${shellQuote(pidFile)})" 2>/dev/null; sleep 0.2; rm -rf ${shellQuote(dir)}`
  })
  const stop = async (): Promise<void> => {
    if (stopped) return
    stopped = true
    await server.terminate()
    cleanup.release()
    rmSync(dir, { recursive: true, force: true })
  }
  return { stop, stopped: () => stopped }
}

const launchOnFreePort = async (
  server: SpawnedServer,
  logFile: string,
  setPort: (port: number) => void
): Promise<void> => {
  for (let attempt = 1; ; attempt++) {
    setPort(await freePort())
    try {
      return await server.launch()
    } catch (cause) {
      if (attempt >= PORT_ATTEMPTS || !isAddressInUse(logTail(logFile, 10))) throw cause
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// MariaDB

const which = async (name: string, fallback: string): Promise<string> =>
  run("sh", ["-c", `command -v ${name}`], { timeoutMs: 5_000 }).then(
    ({ stdout }) => stdout.trim() || fallback,
    () => fallback
  )

/** Starts a throwaway MariaDB instance (user `root`, no password) with a database `test`. */
export const startMariaDb = async (): Promise<PrivateMariaDb> => {
  const mariadbd = await which("mariadbd", "/usr/sbin/mariadbd")
  const installDb = await which("mariadb-install-db", "/usr/bin/mariadb-install-db")
  const dir = mkdtempSync(join(tmpdir(), "bf-fault-my-"))
  const data = join(dir, "data")
  const socket = join(dir, "my.sock")
  const pidFile = join(dir, "my.pid")
  const logFile = join(dir, "my.err")
  // Small buffer pool and redo log (a fast start and ~35 MB on disk instead of ~115 MB); a flush at
  // every commit (the default, stated because crash tests rely on it).
  const innodb = ["--innodb-buffer-pool-size=32M", "--innodb-log-file-size=16M"]
  let port = 0

  const connect = (database?: string) =>
    mysql.createConnection({
      host: "127.0.0.1",
      port,
      user: "root",
      connectTimeout: 5_000,
      ...(database === undefined ? {} : { database })
    })
  const query = async <R extends object = Record<string, unknown>>(
    sql: string,
    params?: ReadonlyArray<unknown>,
    database: string | null = "test"
  ): Promise<Array<R>> => {
    const connection = await connect(database ?? undefined)
    connection.on("error", () => undefined)
    try {
      const [rows] = await connection.query(sql, params === undefined ? undefined : [...params])
      return Array.isArray(rows) ? (rows as Array<R>) : []
    } finally {
      await connection.end().catch(() => connection.destroy())
    }
  }

  const server = spawnedServer({
    name: "MariaDB",
    command: mariadbd,
    args: () => [
      "--no-defaults",
      `--datadir=${data}`,
      `--port=${port}`,
      "--bind-address=127.0.0.1",
      `--socket=${socket}`,
      "--user=root",
      `--pid-file=${pidFile}`,
      `--log-error=${logFile}`,
      ...innodb,
      "--innodb-flush-log-at-trx-commit=1",
      "--skip-name-resolve",
      "--max-connections=100"
    ],
    logFile,
    ready: () => query("SELECT 1", undefined, null)
  })
  const { stop, stopped } = lifecycle(server, dir, pidFile)

  try {
    await run(
      installDb,
      [
        "--no-defaults",
        `--datadir=${data}`,
        "--user=root",
        "--auth-root-authentication-method=normal",
        "--skip-test-db",
        ...innodb
      ],
      { timeoutMs: 60_000 }
    )
    await launchOnFreePort(server, logFile, (p) => {
      port = p
    })
    await query("CREATE DATABASE IF NOT EXISTS test", undefined, null)
  } catch (cause) {
    await stop()
    throw cause
  }

  return {
    port,
    url: `mysql://root@127.0.0.1:${port}/test`,
    dir,
    pid: server.pid,
    crash: server.kill,
    start: async () => {
      if (stopped()) throw new Error("startMariaDb: start() after stop()")
      await server.launch()
    },
    stop,
    log: (lines) => logTail(logFile, lines),
    query: (sql, params) => query(sql, params),
    [Symbol.asyncDispose]: stop
  }
}

// ---------------------------------------------------------------------------------------------------
// Redis

/**
 * Starts a private Redis. `appendonly: true` keeps every write in an AOF fsynced at each write, so a
 * crash loses nothing; without it (the default, like the shared server) a crash loses everything.
 */
export const startRedis = async (options: { readonly appendonly?: boolean } = {}): Promise<PrivateRedis> => {
  const appendonly = options.appendonly ?? false
  const redisServer = await which("redis-server", "/usr/bin/redis-server")
  const dir = mkdtempSync(join(tmpdir(), "bf-fault-redis-"))
  const pidFile = join(dir, "redis.pid")
  const logFile = join(dir, "redis.log")
  let port = 0

  const call = async (
    timeoutMs: number,
    name: string,
    ...args: ReadonlyArray<string | number | Buffer>
  ): Promise<unknown> => {
    const redis = new IORedis({
      host: "127.0.0.1",
      port,
      lazyConnect: true,
      // connectTimeout covers the TCP connect only; commandTimeout bounds the ready check and the command.
      connectTimeout: Math.min(timeoutMs, 5_000),
      commandTimeout: timeoutMs,
      retryStrategy: () => null,
      maxRetriesPerRequest: 0
    })
    redis.on("error", () => undefined)
    try {
      await redis.connect()
      return await redis.call(name, ...args)
    } finally {
      redis.disconnect()
    }
  }
  const command = (name: string, ...args: ReadonlyArray<string | number | Buffer>) =>
    call(30_000, name, ...args)

  const server = spawnedServer({
    name: "Redis",
    command: redisServer,
    // Not daemonized (unlike the shared server's recipe): the spawned process is the server, so its PID
    // and its exit are known without reading a pid file. `--save ''`: no RDB snapshots.
    args: () => [
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--save",
      "",
      "--appendonly",
      appendonly ? "yes" : "no",
      "--appendfsync",
      "always",
      "--dir",
      dir,
      "--daemonize",
      "no",
      "--pidfile",
      pidFile,
      "--logfile",
      logFile
    ],
    logFile,
    // PING answers LOADING while the AOF is replayed after a restart: ready means PONG.
    ready: async () => {
      const reply = await call(1_000, "PING")
      if (reply !== "PONG") throw new Error(`PING answered ${String(reply)}`)
    }
  })
  const { stop, stopped } = lifecycle(server, dir, pidFile)

  try {
    await launchOnFreePort(server, logFile, (p) => {
      port = p
    })
  } catch (cause) {
    await stop()
    throw cause
  }

  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    dir,
    appendonly,
    pid: server.pid,
    crash: server.kill,
    start: async () => {
      if (stopped()) throw new Error("startRedis: start() after stop()")
      await server.launch()
    },
    stop,
    log: (lines) => logTail(logFile, lines),
    command,
    [Symbol.asyncDispose]: stop
  }
}
