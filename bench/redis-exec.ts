/**
 * The Redis executor alone, against raw ioredis: Node CPU per row (`process.cpuUsage` user + system ÷
 * rows) for N rows in batches of 500, 4 batches in flight, no engine.
 *
 * - `raw-mset`: ioredis MSET of the batch's pairs (one flat array per batch).
 * - `raw-pipeline`: ioredis pipeline of one SET per row, every reply checked.
 * - `exec:set`: the executor on a plain `Redis.set` target (fused: one MSET per batch).
 * - `exec:set-nofusion`: the same with `fusion: false` (a pipeline of SETs, the pipeline shape).
 * - `exec:hset`: `Redis.hset` with two fields per row (a pipeline of HSETs).
 *
 * Keys are `bx:` + two letters + the id (12 characters at most for 200,000 rows, so V8 keeps them flat, as
 * the W1 bench's keys; longer concatenations would be ropes that ioredis flattens when it writes them).
 * Rows are made before the clock; each run hands the executor fresh batch arrays (its per-call state
 * is keyed on the rows array). Variants run interleaved, order reversed on odd rounds; the report is
 * the median and min–max of the rounds. `--base <dir>` also loads another build of the library
 * (e.g. an extracted older commit whose node_modules links to this one's, so both share one
 * `effect`) and runs its executor variants as `base:…`, interleaved with the current ones.
 * `--profile <file>` writes a CPU profile (inspector, 250 µs sampling) of the measured runs of the
 * variants given by `--only` and prints the top functions by self time.
 *
 *   npx tsx bench/redis-exec.ts [--rows 200000] [--rounds 7] [--db 7] [--base /tmp/old/src]
 *     [--only exec:set,raw-mset] [--profile out.cpuprofile]
 */
import { writeFileSync } from "node:fs"
import { Session } from "node:inspector/promises"
import { pathToFileURL } from "node:url"
import { Effect, ManagedRuntime, Schema } from "effect"
import * as CurrentRedis from "effect-batchflow/Redis"
import { Redis as IORedis } from "ioredis"
import { parseArgs } from "./util.js"

const args = parseArgs(process.argv.slice(2), {
  rows: 200_000,
  rounds: 7,
  db: 7,
  url: process.env.BATCHFLOW_REDIS_URL ?? "redis://127.0.0.1:6379",
  base: undefined as string | undefined,
  only: undefined as string | undefined,
  profile: undefined as string | undefined
})
const N = Number(args.rows)
const BATCH = 500
const IN_FLIGHT = 4

type RedisModule = typeof CurrentRedis

interface SetRow {
  readonly key: string
  readonly value: string
}
interface HashRow {
  readonly key: string
  readonly name: string
  readonly visits: number
}

const chunk = <A>(rows: ReadonlyArray<A>): Array<Array<A>> => {
  const out: Array<Array<A>> = []
  for (let i = 0; i < rows.length; i += BATCH) out.push(rows.slice(i, i + BATCH))
  return out
}

const setRows = (prefix: string): ReadonlyArray<SetRow> =>
  Array.from({ length: N }, (_, i) => ({ key: `${prefix}${i + 1}`, value: `user-${i + 1}` }))
const hashRows = (prefix: string): ReadonlyArray<HashRow> =>
  Array.from({ length: N }, (_, i) => ({ key: `${prefix}${i + 1}`, name: `user-${i + 1}`, visits: i }))

/** Runs `send` over the batches, IN_FLIGHT at a time. */
const drive = async <A>(batches: ReadonlyArray<A>, send: (batch: A) => Promise<unknown>): Promise<void> => {
  let next = 0
  const worker = async () => {
    while (next < batches.length) await send(batches[next++]!)
  }
  await Promise.all(Array.from({ length: IN_FLIGHT }, worker))
}

interface Variant {
  readonly name: string
  /** Prepares one run (not measured) and returns the measured part. */
  readonly prepare: () => () => Promise<void>
}

const rawVariants = (redis: IORedis): Array<Variant> => {
  const msetRows = setRows("bx:rm:")
  const pipeRows = setRows("bx:rp:")
  return [
    {
      name: "raw-mset",
      prepare: () => {
        const batches = chunk(msetRows)
        return () =>
          drive(batches, async (batch) => {
            const pairs: Array<string> = []
            for (const row of batch) pairs.push(row.key, row.value)
            await redis.mset(pairs)
          })
      }
    },
    {
      name: "raw-pipeline",
      prepare: () => {
        const batches = chunk(pipeRows)
        return () =>
          drive(batches, async (batch) => {
            const pipeline = redis.pipeline()
            for (const row of batch) pipeline.set(row.key, row.value)
            const replies = await pipeline.exec()
            if (replies === null) throw new Error("raw pipeline: no replies")
            for (const [error] of replies) if (error !== null) throw error
          })
      }
    }
  ]
}

const executorVariants = async (label: string, Redis: RedisModule): Promise<Array<Variant>> => {
  const runtime = ManagedRuntime.make(Redis.layerClient({ url: String(args.url), db: Number(args.db) }))
  const fused = await runtime.runPromise(Redis.makeExecutor({}))
  const plain = await runtime.runPromise(Redis.makeExecutor({ fusion: false }))
  const Strings = Redis.set(`${label}-set`)
  const Hash = Redis.hset(`${label}-hset`, {
    schema: Schema.Struct({ key: Schema.String, name: Schema.String, visits: Schema.Number }),
    key: "key"
  })
  const variant = <A>(
    name: string,
    executor: CurrentRedis.RedisExecutor,
    target: CurrentRedis.RedisTarget<A>,
    rows: ReadonlyArray<A>
  ): Variant => ({
    name: `${label}:${name}`,
    prepare: () => {
      const batches = chunk(rows) // fresh arrays: the executor keeps per-call state per rows array
      return () =>
        drive(batches, async (batch) => {
          const result = await Effect.runPromise(executor.execute(target, batch))
          if (result !== undefined) throw new Error(`${label}:${name}: rows failed`)
        })
    }
  })
  return [
    variant("set", fused, Strings, setRows(`bx:${label[0]}s:`)),
    variant("set-nofusion", plain, Strings, setRows(`bx:${label[0]}p:`)),
    variant("hset", plain, Hash as CurrentRedis.RedisTarget<HashRow>, hashRows(`bx:${label[0]}h:`))
  ]
}

const clean = async (redis: IORedis) => {
  let cursor = "0"
  do {
    const [next, keys] = await redis.scan(cursor, "MATCH", "bx:*", "COUNT", 5000)
    cursor = next
    if (keys.length > 0) await redis.unlink(...keys)
  } while (cursor !== "0")
}

const median = (xs: ReadonlyArray<number>): number => {
  const s = [...xs].sort((a, b) => a - b)
  const m = s.length >> 1
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

interface ProfileNode {
  readonly id: number
  readonly callFrame: { readonly functionName: string; readonly url: string; readonly lineNumber: number }
  readonly children?: ReadonlyArray<number>
}
interface Profile {
  readonly nodes: ReadonlyArray<ProfileNode>
  readonly samples: ReadonlyArray<number>
}

const summarize = (profile: Profile) => {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]))
  const self = new Map<string, number>()
  for (const id of profile.samples) {
    const f = byId.get(id)!.callFrame
    const file = f.url.replace(/^.*\/(node_modules\/)?/, "")
    const name = `${f.functionName || "(anonymous)"} ${file}:${f.lineNumber + 1}`
    self.set(name, (self.get(name) ?? 0) + 1)
  }
  const total = profile.samples.length
  const top = [...self].sort((a, b) => b[1] - a[1]).slice(0, 40)
  for (const [name, n] of top) console.log(`${((100 * n) / total).toFixed(1).padStart(5)} %  ${name}`)
}

const main = async () => {
  const redis = new IORedis(String(args.url), { db: Number(args.db), lazyConnect: true })
  await redis.connect()
  await clean(redis)
  let variants: Array<Variant> = [...rawVariants(redis), ...(await executorVariants("exec", CurrentRedis))]
  if (args.base !== undefined) {
    const Base = (await import(pathToFileURL(`${args.base}/Redis.ts`).href)) as RedisModule
    variants.push(...(await executorVariants("base", Base)))
  }
  if (args.only !== undefined) {
    const only = String(args.only).split(",")
    variants = variants.filter((v) => only.includes(v.name))
  }
  const rounds = Number(args.rounds)
  console.log(
    `Redis executor alone: ${N} rows, batches of ${BATCH}, ${IN_FLIGHT} in flight, ${rounds} rounds`
  )
  // Warm-up (JIT), not measured.
  for (const v of variants) await v.prepare()()
  const session = args.profile === undefined ? undefined : new Session()
  if (session !== undefined) {
    session.connect()
    await session.post("Profiler.enable")
    await session.post("Profiler.setSamplingInterval", { interval: 250 })
    await session.post("Profiler.start")
  }
  const cpu = new Map<string, Array<number>>(variants.map((v) => [v.name, []]))
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? variants : [...variants].reverse()
    for (const v of order) {
      const run = v.prepare()
      const mark = process.cpuUsage()
      await run()
      const used = process.cpuUsage(mark)
      cpu.get(v.name)!.push((used.user + used.system) / N)
    }
  }
  if (session !== undefined) {
    const { profile } = await session.post("Profiler.stop")
    writeFileSync(String(args.profile), JSON.stringify(profile))
    summarize(profile as unknown as Profile)
  }
  const rawMset = cpu.get("raw-mset")
  const rawMedian = rawMset === undefined ? undefined : median(rawMset)
  for (const v of variants) {
    const xs = cpu.get(v.name)!
    const ratio = rawMedian === undefined ? "" : `  raw-mset/this ${(rawMedian / median(xs)).toFixed(2)}×`
    console.log(
      `${v.name.padEnd(22)} ${median(xs).toFixed(2)} µs/row (${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)})${ratio}`
    )
  }
  await clean(redis)
  await redis.quit()
  process.exit(0)
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
