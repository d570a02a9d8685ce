/**
 * W1 Redis (see ../shared/design/BENCH.md): `SET bench:<id> user-<id>` for id 1..N.
 *
 * - `batchflow` — 4 producer fibers taking ids from one shared counter, per-row `submit` to a
 *   `Redis.set` target; buffer 10,000, flushSize 500, flushInterval 50 ms, concurrency 4, retry on
 *   (3 attempts, 20 ms, max 500 ms), timeout 5 s. Plain SETs are fused into one MSET per batch (the default).
 * - `batchflow-nofusion` — the same with `fusion: false`: one pipeline of 500 SETs per batch.
 * - `raw-pipeline` (the baseline) — ioredis `pipeline()` of 500 SETs, 4 pipelines in flight.
 * - `raw-mset` (for reference) — ioredis MSET of 500 pairs, 4 in flight.
 *
 * Variants are interleaved in every run. The clock runs from the first submit to the flow's scope
 * closed (everything written); connecting and cleanup are outside it. Every run is verified: the
 * number of `bench:*` keys (SCAN) must be N, and sampled values must match. Keys are deleted by
 * SCAN + UNLINK in a dedicated database (never FLUSHDB: the server is shared).
 *
 * Before the runs, each variant writes `--warmup` rows once (not measured), so that no variant pays
 * the JIT warm-up inside the clock.
 *
 *   npx tsx bench/w1-redis.ts [--rows 200000] [--runs 3] [--warmup 20000] [--db 13] [--url redis://127.0.0.1:6379] [--json out.json]
 */
import { Effect, ManagedRuntime } from "effect"
import { BatchFlow } from "effect-batchflow"
import * as Redis from "effect-batchflow/Redis"
import { Redis as IORedis } from "ioredis"
import { parseArgs, report, type Sample, time, w1Config } from "./util.js"

const args = parseArgs(process.argv.slice(2), {
  rows: 200_000,
  runs: 3,
  warmup: 20_000,
  db: 13,
  url: process.env.BATCHFLOW_REDIS_URL ?? "redis://127.0.0.1:6379"
})
let N = args.rows
const PRODUCERS = 4
const BATCH = 500
const IN_FLIGHT = 4

const Users = Redis.set("bench")

const keyOf = (id: number) => `bench:${id}`
const userOf = (id: number) => `user-${id}`

const scanKeys = async (redis: IORedis, onBatch: (keys: Array<string>) => Promise<void>) => {
  let cursor = "0"
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", "bench:*", "COUNT", 5000)
    cursor = next
    if (keys.length > 0) await onBatch(keys)
  } while (cursor !== "0")
}

const clean = (redis: IORedis) =>
  scanKeys(redis, async (keys) => {
    await redis.unlink(...keys)
  })

const verify = async (redis: IORedis, variant: string) => {
  let count = 0
  await scanKeys(redis, async (keys) => {
    count += keys.length
  })
  if (count !== N) throw new Error(`${variant}: ${count} bench:* keys, expected ${N}`)
  const sample = [1, 2, Math.floor(N / 2), N - 1, N]
  const values = await redis.mget(...sample.map(keyOf))
  sample.forEach((id, i) => {
    if (values[i] !== userOf(id))
      throw new Error(`${variant}: ${keyOf(id)} = ${values[i]}, expected ${userOf(id)}`)
  })
}

/** Batches of 500 ids, taken by 4 workers: `send` writes one batch. */
const rawBatches = async (send: (first: number, last: number) => Promise<unknown>): Promise<number> => {
  let next = 1
  const worker = async () => {
    while (next <= N) {
      const first = next
      const last = Math.min(first + BATCH - 1, N)
      next = last + 1
      await send(first, last)
    }
  }
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker))
  return N
}

const rawPipeline = (redis: IORedis) =>
  rawBatches(async (first, last) => {
    const pipeline = redis.pipeline()
    for (let id = first; id <= last; id++) pipeline.set(keyOf(id), userOf(id))
    const replies = await pipeline.exec()
    if (replies?.some(([error]) => error !== null)) throw new Error("raw pipeline: a SET failed")
  })

const rawMset = (redis: IORedis) =>
  rawBatches(async (first, last) => {
    const pairs: Array<string> = []
    for (let id = first; id <= last; id++) pairs.push(keyOf(id), userOf(id))
    await redis.mset(pairs)
  })

type ClientRuntime = ManagedRuntime.ManagedRuntime<Redis.RedisClient, Redis.RedisConnectionError>

const batchflow = (runtime: ClientRuntime, fusion: boolean, statsOut: Array<Redis.Stats>) => {
  // One counter shared by the producers: rows reach the flow in id order, as the baselines send them.
  let next = 1
  const producer = Effect.gen(function* () {
    const flow = yield* BatchFlow.BatchFlow
    while (next <= N) {
      const id = next++
      yield* flow.submit(Users, { key: keyOf(id), value: userOf(id) })
    }
  })
  const program = Effect.gen(function* () {
    yield* Effect.all(
      Array.from({ length: PRODUCERS }, () => producer),
      { concurrency: "unbounded", discard: true }
    )
    const flow = yield* BatchFlow.BatchFlow
    const executor = yield* Redis.RedisExecutor
    yield* flow.close
    const stats = yield* flow.stats
    if (stats.committed !== N) throw new Error(`batchflow: ${stats.committed} rows committed, expected ${N}`)
    statsOut.push(yield* executor.stats)
  }).pipe(Effect.provide(Redis.layer({ ...w1Config, fusion })))
  return runtime.runPromise(program).then(() => N)
}

const main = async () => {
  const redis = new IORedis(args.url, { db: args.db, lazyConnect: true })
  await redis.connect()
  const runtime: ClientRuntime = ManagedRuntime.make(Redis.layerClient({ url: args.url, db: args.db }))
  await runtime.runPromise(Effect.void) // connect outside the clock
  const samples: Array<Sample> = []
  const fusedStats: Array<Redis.Stats> = []
  const variants: ReadonlyArray<readonly [string, () => Promise<number>]> = [
    ["raw-pipeline", () => rawPipeline(redis)],
    ["batchflow", () => batchflow(runtime, true, fusedStats)],
    ["raw-mset", () => rawMset(redis)],
    ["batchflow-nofusion", () => batchflow(runtime, false, [])]
  ]
  console.log(`W1 Redis: ${N} rows, db ${args.db}, ${args.runs} runs, variants interleaved`)
  if (args.warmup > 0) {
    N = Math.min(args.warmup, args.rows)
    for (const [name, body] of variants) {
      await clean(redis)
      await body()
      await verify(redis, `warm-up ${name}`)
    }
    N = args.rows
    fusedStats.length = 0
  }
  for (let run = 1; run <= args.runs; run++) {
    // Rotate the order so that no variant always runs first.
    for (let i = 0; i < variants.length; i++) {
      const [name, body] = variants[(i + run - 1) % variants.length]!
      await clean(redis)
      const sample = await time(name, run, body)
      await verify(redis, name)
      samples.push(sample)
      console.log(`run ${run} ${name}: ${Math.round(sample.rowsPerSecond).toLocaleString()} rows/s`)
    }
  }
  await clean(redis)
  report("W1 Redis (SET bench:<id> user-<id>)", samples, "raw-pipeline", args.json)
  const last = fusedStats.at(-1)
  if (last !== undefined) {
    console.log(
      `batchflow executor, last run: ${last.rowsIn} rows → ${last.sent} commands sent (${last.fusedRows} rows fused), ${last.resent} re-sent, ${last.failedRows} failed`
    )
  }
  await runtime.dispose()
  await redis.quit()
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
