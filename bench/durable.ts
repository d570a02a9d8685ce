/**
 * Durable mode, end to end, with producers and workers as processes of their own: P producers append
 * N rows (batches of B) to a Redis Stream, W workers read them with a consumer group and write them
 * to a keyed PostgreSQL table (ON CONFLICT DO NOTHING), acknowledging each entry once written. The
 * same pipeline is run with effect-batchflow (`Durable.producer` / `Durable.worker` over
 * `Postgres.layer`) and with raw ioredis + pg (XADD / XREADGROUP / unnest INSERT / XACK + XDEL), in
 * turn, `--runs` times. Redis is a private server on a spare port with AOF on (`--fsync everysec` by
 * default, `always` for no loss at a Redis crash); PostgreSQL is the shared server.
 *
 * Reported per run: durable append rows/s (start → the last producer's last append acknowledged),
 * end-to-end rows/s (start → every row in the table, stream empty, nothing pending), and, in a run
 * of its own (`--handover`), the time from kill -9 of a busy worker until its pending entries were
 * claimed by the others (`minIdle` 2 s) and until they were written.
 *
 * Before each measured run the same processes carry `--warmup` rows (default: as many as `--rows`)
 * through the whole pipeline, unmeasured, and the table is emptied: a process that has just started
 * runs the library's code slower than a long-lived one (the JIT has not compiled it yet), and the
 * raw pipeline's much smaller code warms up sooner. `--warmup 0` measures cold processes.
 *
 *   npx tsx bench/durable.ts [--rows 200000] [--warmup 200000] [--batch 500] [--producers 4] [--workers 4] [--runs 3]
 *                            [--fsync everysec|always] [--only lib|raw] [--handover 1]
 *                            [--node-args "--max-semi-space-size=64"] [--logs 1]
 */
import { type ChildProcess, spawn } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import * as net from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { PgClient } from "@effect/sql-pg"
import { Effect, Layer, Redacted, Schema } from "effect"
import { Redis as IORedis } from "ioredis"
import pg from "pg"
import * as Durable from "../src/Durable.js"
import { BatchFlow, Conflict, Table } from "../src/index.js"
import * as Postgres from "../src/Postgres.js"
import * as Redis from "../src/Redis.js"
import { compile } from "./util.js"

const args = new Map<string, string>()
for (let i = 2; i < process.argv.length; i += 2)
  args.set(process.argv[i]!.replace(/^--/, ""), process.argv[i + 1] ?? "")
const arg = (name: string, fallback: string): string => args.get(name) ?? fallback

const pgUrl = process.env.BATCHFLOW_PG_URL ?? "postgres://postgres@127.0.0.1:5432/test"
const GROUP = "batchflow"
const PREFIX = "bench:durable"
const CONCURRENCY = 4

interface Row {
  readonly id: number
  readonly user_id: number
  readonly name: string
  readonly amount: number
}

const rowsOf = (from: number, count: number): Array<Row> =>
  Array.from({ length: count }, (_, i) => ({
    id: from + i,
    user_id: (from + i) % 1000,
    name: `user-${from + i}`,
    amount: (from + i) * 0.5
  }))

const tableOf = (name: string) =>
  Table.make(name, {
    columns: Schema.Struct({
      id: Schema.Number,
      user_id: Schema.Number,
      name: Schema.String,
      amount: Schema.Number
    }),
    key: ["id"],
    conflict: Conflict.ignore
  })

const connect = async (url: string): Promise<IORedis> => {
  const redis = new IORedis(url, { lazyConnect: true, maxRetriesPerRequest: 0 })
  redis.on("error", () => undefined)
  await redis.connect()
  return redis
}

/** CPU (user + system) used since `start`, in microseconds. */
const cpuMicros = (start: NodeJS.CpuUsage): number => {
  const used = process.cpuUsage(start)
  return used.user + used.system
}

/**
 * CPU (user + system) a process has used so far, in microseconds (Linux: /proc/<pid>/stat); NaN once
 * it is gone (the worker killed in a handover run).
 */
const cpuOfPid = (pid: number): number => {
  let stat: string
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8")
  } catch {
    return Number.NaN
  }
  // Fields after the command name, which is in parentheses and may hold spaces.
  const fields = stat.split(") ")[1]!.split(" ")
  return ((Number(fields[11]) + Number(fields[12])) * 1_000_000) / CLOCK_TICKS
}
const CLOCK_TICKS = 100

/** Producers start together: each waits for its token on this list. */
const startList = `${PREFIX}:start`

// ---------------------------------------------------------------------------------------- children

/**
 * A producer appends `warm` rows first (ids from `warmFrom`), before it says "ready": the JIT compiles
 * what it runs most, and a process that has just started runs the library's larger code slower than
 * a long-lived one would. The orchestrator waits until the workers have drained them too.
 */
interface ProducerArgs {
  readonly redisUrl: string
  readonly table: string
  readonly from: number
  readonly count: number
  readonly batch: number
  readonly warmFrom: number
  readonly warm: number
}

const producerLib = async (a: ProducerArgs) => {
  const Events = tableOf(a.table)
  const layer = Durable.producer({
    prefix: PREFIX,
    flushSize: a.batch,
    concurrency: CONCURRENCY,
    flushInterval: "5 millis"
  }).pipe(Layer.provide(Redis.layerClient({ url: a.redisUrl })))
  const gate = await connect(a.redisUrl)
  await Effect.runPromise(
    Effect.gen(function* () {
      const flow = yield* BatchFlow.BatchFlow
      const append = (from: number, count: number) =>
        Effect.gen(function* () {
          for (let first = from; first < from + count; first += a.batch) {
            yield* flow.submitAll(Events, rowsOf(first, Math.min(a.batch, from + count - first)))
          }
          yield* flow.flush
        })
      yield* append(a.warmFrom, a.warm)
      const warmed = (yield* flow.stats).committed
      console.log("ready")
      yield* Effect.promise(() => gate.blpop(startList, 0))
      const cpu = process.cpuUsage()
      yield* append(a.from, a.count)
      const stats = yield* flow.stats
      console.log(`done ${stats.committed - warmed} ${stats.failed + stats.unknownOutcome} ${cpuMicros(cpu)}`)
    }).pipe(Effect.provide(layer))
  )
  gate.disconnect()
}

const producerRaw = async (a: ProducerArgs) => {
  const redis = await connect(a.redisUrl)
  const key = `${PREFIX}:${a.table}`
  let appended = 0
  const append = async (from: number, count: number) => {
    let next = from
    const lane = async () => {
      while (next < from + count) {
        const first = next
        const n = Math.min(a.batch, from + count - first)
        next += n
        await redis.xadd(key, "*", "count", String(n), "rows", JSON.stringify(rowsOf(first, n)))
        appended += n
      }
    }
    await Promise.all(Array.from({ length: CONCURRENCY }, lane))
  }
  await append(a.warmFrom, a.warm)
  console.log("ready")
  await redis.blpop(startList, 0)
  const cpu = process.cpuUsage()
  appended = 0
  await append(a.from, a.count)
  console.log(`done ${appended} 0 ${cpuMicros(cpu)}`)
  redis.disconnect()
}

const workerLib = async (redisUrl: string, table: string, consumer: string, minIdle: number) => {
  const Events = tableOf(table)
  const layer = Durable.worker({
    targets: [Events],
    prefix: PREFIX,
    consumer,
    // The default 8 writers: two statements of 2,000 rows (4 entries of 500 each) in flight.
    minIdle,
    block: "200 millis"
  }).pipe(
    // Entries of 500 rows from 4 writers merge into statements of up to 2,000 rows: less CPU per row.
    Layer.provide(Postgres.layer({ flushSize: 2_000, concurrency: 2, flushInterval: "2 millis" })),
    Layer.provide(PgClient.layer({ url: Redacted.make(pgUrl), maxConnections: 2 })),
    Layer.provide(Redis.layerClient({ url: redisUrl }))
  )
  await Effect.runPromise(
    Effect.scoped(
      Effect.gen(function* () {
        yield* Durable.Worker
        console.log("ready")
        yield* Effect.never
      }).pipe(Effect.provide(layer))
    )
  )
}

const workerRaw = async (redisUrl: string, table: string, consumer: string) => {
  const reader = await connect(redisUrl)
  const commands = await connect(redisUrl)
  const key = `${PREFIX}:${table}`
  await commands.xgroup("CREATE", key, GROUP, "0", "MKSTREAM").catch(() => undefined)
  const pool = new pg.Pool({ connectionString: pgUrl, max: CONCURRENCY })
  const insert = `INSERT INTO ${table} (id, user_id, name, amount) SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::float8[]) ON CONFLICT (id) DO NOTHING`
  const queue: Array<[string, Array<string>]> = []
  const waiting: Array<() => void> = []
  const write = async (id: string, fields: Array<string>) => {
    const rows = JSON.parse(fields[fields.indexOf("rows") + 1]!) as Array<Row>
    await pool.query(insert, [
      rows.map((r) => r.id),
      rows.map((r) => r.user_id),
      rows.map((r) => r.name),
      rows.map((r) => r.amount)
    ])
    await commands.multi().xack(key, GROUP, id).xdel(key, id).exec()
  }
  const processor = async () => {
    while (true) {
      const next = queue.shift()
      if (next === undefined) {
        await new Promise<void>((resolve) => waiting.push(resolve))
        continue
      }
      await write(next[0], next[1])
    }
  }
  for (let i = 0; i < CONCURRENCY; i++) void processor()
  console.log("ready")
  while (true) {
    if (queue.length >= CONCURRENCY * 2) {
      await new Promise((resolve) => setTimeout(resolve, 1))
      continue
    }
    const reply = (await reader.xreadgroup(
      "GROUP",
      GROUP,
      consumer,
      "COUNT",
      10,
      "BLOCK",
      200,
      "STREAMS",
      key,
      ">"
    )) as Array<[string, Array<[string, Array<string>]>]> | null
    for (const [, entries] of reply ?? []) queue.push(...entries)
    while (waiting.length > 0 && queue.length > 0) waiting.shift()!()
  }
}

// ------------------------------------------------------------------------------------ orchestrator

const self = fileURLToPath(import.meta.url)

/** The children run this file compiled (`compile`, bench/util.ts), not through tsx. */
let compiled: string | undefined
/** Whether the children's log lines are printed (`--logs 1`); they are always collected. */
const showLogs = arg("logs", "0") !== "0"
/** Node options for every child (`--node-args "--max-semi-space-size=64"`, or a profiler's). */
const nodeArgs = arg("node-args", "")
  .split(" ")
  .filter((a) => a !== "")

interface Proc {
  readonly child: ChildProcess
  readonly lines: Array<string>
  readonly line: (pattern: RegExp) => Promise<string>
}

const launch = (role: string, extra: ReadonlyArray<string>): Proc => {
  const child = spawn(process.execPath, [...nodeArgs, compiled!, "--role", role, ...extra], {
    stdio: ["ignore", "pipe", "inherit"]
  })
  const lines: Array<string> = []
  const watchers = new Set<() => void>()
  let partial = ""
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
    const parts = (partial + chunk).split("\n")
    partial = parts.pop()!
    lines.push(...parts.filter((l) => l !== ""))
    if (showLogs)
      for (const l of parts) if (l !== "" && !/^(ready|done )/.test(l)) console.log(`[${role}] ${l}`)
    for (const w of watchers) w()
  })
  const line = (pattern: RegExp) =>
    new Promise<string>((resolve, reject) => {
      const check = () => {
        const found = lines.find((l) => pattern.test(l))
        if (found !== undefined) {
          watchers.delete(check)
          resolve(found)
        } else if (child.exitCode !== null) {
          watchers.delete(check)
          reject(
            new Error(`${role} exited (${child.exitCode}) before ${pattern}: ${lines.slice(-5).join(" | ")}`)
          )
        }
      }
      watchers.add(check)
      child.once("exit", check)
      check()
    })
  return { child, lines, line }
}

const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address() as net.AddressInfo
      server.close(() => resolve(port))
    })
  })

const sleep = (millis: number) => new Promise((resolve) => setTimeout(resolve, millis))

const startRedis = async (fsync: string) => {
  const dir = mkdtempSync(join(tmpdir(), "bf-bench-durable-"))
  const port = await freePort()
  const child = spawn(
    "redis-server",
    [
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--save",
      "",
      "--appendonly",
      "yes",
      "--appendfsync",
      fsync,
      "--dir",
      dir
    ],
    { stdio: "ignore" }
  )
  const url = `redis://127.0.0.1:${port}`
  for (let i = 0; ; i++) {
    try {
      const r = await connect(url)
      await r.ping()
      r.disconnect()
      break
    } catch (cause) {
      if (i > 100) throw cause
      await sleep(100)
    }
  }
  return {
    url,
    pid: child.pid!,
    stop: () => {
      child.kill("SIGKILL")
      rmSync(dir, { recursive: true, force: true })
    }
  }
}

interface Result {
  readonly appendRowsPerSecond: number
  readonly endToEndRowsPerSecond: number
  /** CPU µs per row from the start signal to the end: producers, workers, the Redis server. */
  readonly cpu: { readonly producers: number; readonly workers: number; readonly redis: number }
  readonly claimMillis?: number
  readonly handoverMillis?: number
}

/** Until the stream is empty and nothing is pending: every entry written and acknowledged. */
const drained = async (redis: IORedis, key: string) => {
  while (true) {
    const length = await redis.xlen(key)
    const pending = Number(((await redis.xpending(key, GROUP)) as [number])[0])
    if (length === 0 && pending === 0) return
    await sleep(5)
  }
}

const runOnce = async (
  impl: "lib" | "raw",
  redisUrl: string,
  redisPid: number,
  pool: pg.Pool,
  table: string,
  options: { rows: number; warm: number; batch: number; producers: number; workers: number; kill: boolean }
): Promise<Result> => {
  const redis = await connect(redisUrl)
  const key = `${PREFIX}:${table}`
  await redis.del(key, startList)
  await pool.query(`TRUNCATE ${table}`)
  const minIdle = 2_000
  const workers = Array.from({ length: options.workers }, (_, i) =>
    launch(`worker-${impl}`, [
      "--redis",
      redisUrl,
      "--table",
      table,
      "--consumer",
      `w${i}`,
      "--min-idle",
      String(minIdle)
    ])
  )
  await Promise.all(workers.map((w) => w.line(/^ready$/)))
  const per = Math.ceil(options.rows / options.producers)
  const warmPer = Math.ceil(options.warm / options.producers)
  const producers = Array.from({ length: options.producers }, (_, i) =>
    launch(`producer-${impl}`, [
      "--warm-from",
      // Ids after the measured ones; the warm-up rows are removed before the start anyway.
      String(options.rows + i * warmPer),
      "--warm",
      String(Math.max(0, Math.min(warmPer, options.warm - i * warmPer))),
      "--redis",
      redisUrl,
      "--table",
      table,
      "--from",
      String(i * per),
      "--count",
      String(Math.min(per, options.rows - i * per)),
      "--batch",
      String(options.batch)
    ])
  )
  await Promise.all(producers.map((p) => p.line(/^ready$/)))
  if (options.warm > 0) {
    await drained(redis, key)
    await pool.query(`TRUNCATE ${table}`)
  }
  const workersCpu = () => workers.reduce((sum, w) => sum + cpuOfPid(w.child.pid!), 0)
  const cpuAtStart = { workers: workersCpu(), redis: cpuOfPid(redisPid) }
  const started = performance.now()
  await redis.rpush(startList, ...producers.map(() => "go"))
  let killedAt: number | undefined
  let claimMillis: number | undefined
  let handoverMillis: number | undefined
  const killer = options.kill
    ? (async () => {
        // A busy worker: one holding entries while rows keep coming.
        while (true) {
          await sleep(20)
          const summary = (await redis.xpending(key, GROUP)) as [
            number,
            string,
            string,
            Array<[string, string]> | null
          ]
          const w0 = summary[3]?.find(([name]) => name === "w0")
          if (w0 !== undefined && Number(w0[1]) > 0 && (await count(pool, table)) > options.rows / 4) break
        }
        const held = (await redis.xpending(key, GROUP, "-", "+", 1000, "w0")) as Array<[string]>
        workers[0]!.child.kill("SIGKILL")
        killedAt = performance.now()
        const ids = held.map(([id]) => id)
        while (true) {
          await sleep(10)
          const left = (await redis.xpending(key, GROUP, "-", "+", 1, "w0")) as Array<unknown>
          if (left.length === 0) break
        }
        claimMillis = performance.now() - killedAt
        // Written (acknowledged, so deleted) once XRANGE no longer finds them.
        while (true) {
          const found = await Promise.all(ids.map((id) => redis.xrange(key, id, id)))
          if (found.every((f) => f.length === 0)) break
          await sleep(10)
        }
        handoverMillis = performance.now() - killedAt
        console.log(
          `  killed w0 holding ${ids.length} entries: claimed after ${Math.round(claimMillis)} ms, written after ${Math.round(handoverMillis)} ms`
        )
      })()
    : Promise.resolve()
  await Promise.all(producers.map((p) => p.line(/^done /)))
  const appended = performance.now() - started
  let producersCpu = 0
  for (const p of producers) {
    const [, ok, bad, cpu] = (await p.line(/^done /)).split(" ")
    if (Number(bad) !== 0) throw new Error(`a producer reported ${bad} rows not appended (${ok} appended)`)
    producersCpu += Number(cpu)
  }
  await drained(redis, key)
  const ended = performance.now() - started
  const cpu = {
    producers: producersCpu / options.rows,
    workers: (workersCpu() - cpuAtStart.workers) / options.rows,
    redis: (cpuOfPid(redisPid) - cpuAtStart.redis) / options.rows
  }
  await killer
  const inTable = await count(pool, table)
  // SIGTERM: a child exits normally (so a profiler given by --node-args writes its profile).
  for (const w of workers) w.child.kill("SIGTERM")
  redis.disconnect()
  if (inTable !== options.rows)
    throw new Error(`${impl}: ${inTable} rows in the table, expected ${options.rows}`)
  return {
    appendRowsPerSecond: options.rows / (appended / 1000),
    endToEndRowsPerSecond: options.rows / (ended / 1000),
    cpu,
    ...(claimMillis === undefined ? {} : { claimMillis }),
    ...(handoverMillis === undefined ? {} : { handoverMillis })
  }
}

const count = async (pool: pg.Pool, table: string) =>
  Number((await pool.query(`SELECT count(*)::int AS n FROM ${table}`)).rows[0].n)

const range = (values: ReadonlyArray<number>, digits = 0) =>
  values.length === 0 ? "-" : `${Math.min(...values).toFixed(digits)}–${Math.max(...values).toFixed(digits)}`

const orchestrate = async () => {
  const rows = Number(arg("rows", "200000"))
  // Rows through the whole pipeline before each measured run, in the same processes (0: none).
  const warm = Number(arg("warmup", String(rows)))
  const batch = Number(arg("batch", "500"))
  const producers = Number(arg("producers", "4"))
  const workers = Number(arg("workers", "4"))
  const runs = Number(arg("runs", "3"))
  const only = arg("only", "")
  const handover = arg("handover", "1") !== "0"
  compiled = await compile("durable-bench", { entryPoints: [self] })
  const redis = await startRedis(arg("fsync", "everysec"))
  const pool = new pg.Pool({ connectionString: pgUrl, max: 2 })
  const table = `durable_bench_${process.pid}`
  await pool.query(
    `CREATE TABLE ${table} (id BIGINT PRIMARY KEY, user_id BIGINT NOT NULL, name TEXT NOT NULL, amount DOUBLE PRECISION NOT NULL)`
  )
  const results: Record<"lib" | "raw", Array<Result>> = { lib: [], raw: [] }
  const handovers: Array<Result> = []
  try {
    console.log(
      `durable bench: ${rows} rows (after ${warm} warm-up rows through the same processes), batches of ${batch}, ${producers} producers, ${workers} workers, AOF fsync ${arg("fsync", "everysec")}`
    )
    for (let run = 1; run <= runs; run++) {
      for (const impl of ["lib", "raw"] as const) {
        if (only !== "" && only !== impl) continue
        const r = await runOnce(impl, redis.url, redis.pid, pool, table, {
          rows,
          warm,
          batch,
          producers,
          workers,
          kill: false
        })
        results[impl].push(r)
        console.log(
          `run ${run} ${impl}: append ${Math.round(r.appendRowsPerSecond)} rows/s, end to end ${Math.round(r.endToEndRowsPerSecond)} rows/s; ` +
            `CPU µs/row: producers ${r.cpu.producers.toFixed(2)}, workers ${r.cpu.workers.toFixed(2)}, Redis ${r.cpu.redis.toFixed(2)}`
        )
      }
      if (handover && only !== "raw") {
        const r = await runOnce("lib", redis.url, redis.pid, pool, table, {
          rows,
          warm,
          batch,
          producers,
          workers,
          kill: true
        })
        handovers.push(r)
      }
    }
    const e2e = (impl: "lib" | "raw") => results[impl].map((r) => r.endToEndRowsPerSecond)
    const ratios = results.lib.map((r, i) =>
      results.raw[i] === undefined
        ? Number.NaN
        : r.endToEndRowsPerSecond / results.raw[i]!.endToEndRowsPerSecond
    )
    console.log("\nsummary (min–max over runs)")
    console.log(`  lib append       ${range(results.lib.map((r) => r.appendRowsPerSecond))} rows/s`)
    console.log(`  lib end to end   ${range(e2e("lib"))} rows/s`)
    console.log(`  raw append       ${range(results.raw.map((r) => r.appendRowsPerSecond))} rows/s`)
    console.log(`  raw end to end   ${range(e2e("raw"))} rows/s`)
    for (const impl of ["lib", "raw"] as const) {
      const of = (role: "producers" | "workers" | "redis") =>
        range(
          results[impl].map((r) => r.cpu[role]),
          2
        )
      console.log(
        `  ${impl} CPU µs/row  producers ${of("producers")}, workers ${of("workers")}, Redis ${of("redis")}`
      )
    }
    console.log(
      `  lib / raw e2e    ${range(
        ratios.filter((x) => !Number.isNaN(x)),
        2
      )}x (per run)`
    )
    if (handovers.length > 0) {
      console.log(
        `  handover claimed ${range(handovers.map((r) => r.claimMillis ?? Number.NaN))} ms after kill -9 (minIdle 2000 ms)`
      )
      console.log(
        `  handover written ${range(handovers.map((r) => r.handoverMillis ?? Number.NaN))} ms after kill -9`
      )
      console.log(`  e2e with a kill  ${range(handovers.map((r) => r.endToEndRowsPerSecond))} rows/s`)
    }
  } finally {
    await pool.query(`DROP TABLE IF EXISTS ${table}`).catch(() => undefined)
    await pool.end()
    redis.stop()
  }
}

const role = arg("role", "")
if (role !== "") process.on("SIGTERM", () => process.exit(0))
const main = async () => {
  const redisUrl = arg("redis", "")
  const table = arg("table", "")
  switch (role) {
    case "":
      return orchestrate()
    case "producer-lib":
    case "producer-raw": {
      const run = role === "producer-lib" ? producerLib : producerRaw
      await run({
        redisUrl,
        table,
        from: Number(arg("from", "0")),
        count: Number(arg("count", "0")),
        batch: Number(arg("batch", "500")),
        warmFrom: Number(arg("warm-from", "0")),
        warm: Number(arg("warm", "0"))
      })
      return process.exit(0)
    }
    case "worker-lib":
      return workerLib(redisUrl, table, arg("consumer", "w"), Number(arg("min-idle", "2000")))
    case "worker-raw":
      return workerRaw(redisUrl, table, arg("consumer", "w"))
  }
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(error)
    process.exit(1)
  }
)
