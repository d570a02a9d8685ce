/**
 * The bench on Redis: `SET <prefix>:<id> user-<id>` for every row, in the database of the URL
 * (default 13, so test data in other databases is never touched). BatchFlow writes through
 * `effect-batchflow/Redis` (plain SETs of a batch fused into one MSET); the baseline is an ioredis
 * pipeline of SETs per batch, and for reference one MSET per batch. Keys are removed with SCAN +
 * UNLINK, never FLUSHDB.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import { Redis as IORedis } from "ioredis"
import * as Redis from "../Redis.js"
import { redactUrl } from "./format.js"
import {
  BackendError,
  type Harness,
  integrityOf,
  type MakeHarness,
  messageOf,
  tamperedIds
} from "./harness.js"
import { type Baseline, inBatches } from "./raw.js"
import { type BenchSpec, defaultUrls, flowOptions, urlVariables } from "./workload.js"

const userOf = (id: number) => `user-${id}`

const scan = async (redis: IORedis, pattern: string, onKeys: (keys: Array<string>) => Promise<void>) => {
  let cursor = "0"
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", pattern, "COUNT", 5000)
    cursor = next
    if (keys.length > 0) await onKeys(keys)
  } while (cursor !== "0")
}

const baselines = (spec: BenchSpec, redis: IORedis, keyOf: (id: number) => string): Array<Baseline> => [
  {
    name: "raw ioredis pipeline",
    description: `ioredis pipeline() of ${spec.flushSize} SETs per batch, ${spec.concurrency} in flight`,
    run: (rows, counter) =>
      inBatches(rows, spec.flushSize, spec.concurrency, counter, async (first, last) => {
        const pipeline = redis.pipeline()
        for (let id = first; id <= last; id++) pipeline.set(keyOf(id), userOf(id))
        const replies = await pipeline.exec()
        const failed = replies?.find(([error]) => error !== null)
        if (failed !== undefined) throw failed[0]
      })
  },
  {
    name: "raw ioredis MSET",
    description: `ioredis MSET of ${spec.flushSize} pairs per batch, ${spec.concurrency} in flight (what BatchFlow's fusion sends)`,
    run: (rows, counter) =>
      inBatches(rows, spec.flushSize, spec.concurrency, counter, async (first, last) => {
        const pairs: Array<string> = []
        for (let id = first; id <= last; id++) pairs.push(keyOf(id), userOf(id))
        await redis.mset(pairs)
      })
  }
]

/**
 * @since 0.1.0
 * @category constructors
 */
export const make: MakeHarness = (spec) =>
  Effect.gen(function* () {
    const url = spec.url ?? process.env[urlVariables.redis] ?? defaultUrls.redis
    const prefix = spec.table
    const pattern = `${prefix}:*`
    const keyOf = (id: number) => `${prefix}:${id}`
    const fail = (cause: unknown) =>
      new BackendError({
        message: `cannot connect to Redis at ${redactUrl(url)}: ${messageOf(cause)} (set --url or ${urlVariables.redis})`,
        cause
      })
    const client = yield* Layer.build(Redis.layerClient({ url })).pipe(Effect.mapError(fail))
    const redis = yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: async () => {
          const redis = new IORedis(url, {
            lazyConnect: true,
            maxRetriesPerRequest: 1,
            retryStrategy: () => null
          })
          redis.on("error", () => undefined)
          await redis.connect()
          return redis
        },
        catch: fail
      }),
      (redis) => Effect.promise(() => redis.quit().catch(() => redis.disconnect()))
    )
    const db = (redis.options.db ?? 0) as number
    const Keys = Redis.set("bench", { prefix: `${prefix}:` })
    const deleteAll = Effect.tryPromise(() =>
      scan(redis, pattern, async (keys) => {
        await redis.unlink(...keys)
      })
    )
    const verify = (rows: number) =>
      Effect.tryPromise(async () => {
        let found = 0
        await scan(redis, pattern, async (keys) => {
          found += keys.length
        })
        let missing = 0
        let wrong = 0
        const problems: Array<string> = []
        for (let first = 1; first <= rows; first += 1000) {
          const ids: Array<number> = []
          for (let id = first; id <= Math.min(rows, first + 999); id++) ids.push(id)
          const values = await redis.mget(ids.map(keyOf))
          values.forEach((value, i) => {
            const id = ids[i]!
            if (value === null) missing++
            else if (value !== userOf(id)) {
              wrong++
              if (wrong <= 3)
                problems.push(`${keyOf(id)} holds ${JSON.stringify(value)}, expected ${userOf(id)}`)
            }
          })
        }
        if (missing > 0 && found >= rows)
          problems.push(`${missing} of the keys ${keyOf(1)}..${keyOf(rows)} missing`)
        return integrityOf({ expected: rows, found, wrongContent: wrong, spotChecked: rows, problems })
      })
    const harness: Harness = {
      description: `Redis at ${redactUrl(url)} (db ${db}), keys ${pattern}`,
      flowDescription: `effect-batchflow/Redis, a Redis.set target, ${spec.submitAll ? "submitAll" : "per-row submit"} from ${spec.producers} producers; the plain SETs of a batch are fused into one MSET`,
      notes: [],
      flowLayer: Redis.layer(flowOptions(spec)).pipe(Layer.provide(Layer.succeedContext(client))),
      ops: (flow) => ({
        submit: (id) => flow.submit(Keys, { key: String(id), value: userOf(id) }),
        submitAll: (first, last) => {
          const rows: Array<Redis.SetRow> = []
          for (let id = first; id <= last; id++) rows.push({ key: String(id), value: userOf(id) })
          return flow.submitAll(Keys, rows)
        },
        write: (id) => flow.write(Keys, { key: String(id), value: userOf(id) })
      }),
      reset: deleteAll,
      verify,
      tamper: (tamper, rows) =>
        Effect.tryPromise(async () => {
          const keys = tamperedIds(tamper.rows, rows).map(keyOf)
          if (tamper.kind === "delete") await redis.del(...keys)
          else for (const key of keys) await redis.set(key, "tampered")
        }),
      baselines: baselines(spec, redis, keyOf),
      cleanup: deleteAll
    }
    return harness
  })
