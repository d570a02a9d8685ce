/**
 * The Promise facade on the real Redis (database 6, keys `promise:*`): by URL and from the user's
 * own ioredis client, which the flow copies the options of and leaves open; Redis targets from the
 * facade itself; a failing command reported to `onFailure`.
 */
import { type BatchFailure, createBatchFlow, InvalidRow, Redis } from "effect-batchflow/promise"
import { Redis as IORedis } from "ioredis"
import { afterAll, beforeEach, describe, expect, it } from "vitest"

const redisUrl = process.env.BATCHFLOW_REDIS_URL ?? "redis://127.0.0.1:6379"
const DB = 6

const direct = new IORedis(redisUrl, { db: DB, lazyConnect: true })

const Sessions = Redis.set("promise_sessions", { prefix: "promise:session:", ttl: "10 minutes" })
const Counters = Redis.incrBy("promise_counters", { prefix: "promise:counter:" })

const clean = async () => {
  const keys = await direct.keys("promise:*")
  if (keys.length > 0) await direct.del(...keys)
}

beforeEach(async () => {
  if (direct.status === "wait") await direct.connect()
  await clean()
})
afterAll(async () => {
  await clean()
  await direct.quit()
})

describe("Redis through the facade", () => {
  it("by URL: submit, write, flush and close write every command", async () => {
    const flow = await createBatchFlow({
      backend: { type: "redis", url: redisUrl, db: DB },
      flushSize: 100,
      flushInterval: "10 millis"
    })
    for (let i = 0; i < 300; i++) await flow.submit(Sessions, { key: `s${i}`, value: `user-${i}` })
    for (let i = 0; i < 10; i++) await flow.submit(Counters, { key: "hits", by: 2 })
    await flow.flush()
    expect(await direct.get("promise:session:s299")).toBe("user-299")
    expect(await direct.get("promise:counter:hits")).toBe("20")
    const ttl = await direct.pttl("promise:session:s0")
    expect(ttl).toBeGreaterThan(500_000)
    await flow.write(Sessions, { key: "last", value: "done" })
    expect(await direct.get("promise:session:last")).toBe("done")
    expect(() => flow.unsafeOffer(Sessions, { key: "x" } as never)).toThrow(InvalidRow)
    await flow.submit(Counters, { key: "hits", by: 1 })
    await flow.close()
    expect(await direct.get("promise:counter:hits")).toBe("21")
    expect(flow.stats()).toMatchObject({ accepted: 312, committed: 312 })
  })

  it("from the user's ioredis client: writes to the client's database; the client stays open", async () => {
    const own = new IORedis(redisUrl, { db: DB })
    try {
      const flow = await createBatchFlow({
        backend: { type: "redis", client: own },
        flushInterval: "10 millis"
      })
      await flow.write(Sessions, { key: "own", value: "yes" })
      await flow.close()
      expect(await direct.get("promise:session:own")).toBe("yes")
      expect(own.status).toBe("ready")
      expect(await own.get("promise:session:own")).toBe("yes")
    } finally {
      await own.quit()
    }
  })

  it("a command Redis refuses reaches onFailure as a BatchFailure; write rejects with it", async () => {
    await direct.set("promise:counter:text", "not a number")
    const flow = await createBatchFlow({
      backend: { type: "redis", url: redisUrl, db: DB },
      flushInterval: "10 millis"
    })
    const seen: Array<BatchFailure> = []
    flow.onFailure((failure) => {
      seen.push(failure)
    })
    try {
      await expect(flow.write(Counters, { key: "text", by: 1 })).rejects.toMatchObject({
        _tag: "BatchFailure",
        target: "promise_counters",
        retryable: false
      })
      for (let i = 0; i < 100 && seen.length === 0; i++) await new Promise((r) => setTimeout(r, 10))
      expect(seen.map((f) => f.rows)).toEqual([[{ key: "text", by: 1 }]])
    } finally {
      await flow.close()
    }
  })
})
