/**
 * The Promise facade's buffer-full policies and failure callbacks on the real PostgreSQL: the
 * executor is held up by a lock another session holds on the table, so the buffer really fills;
 * failures are real constraint violations and a missing table.
 */
import { BatchFailure, BufferFull, createBatchFlow, type Flow, Schema, Table } from "effect-batchflow/promise"
import pg from "pg"
import { afterAll, beforeEach, describe, expect, it } from "vitest"

const pgUrl = process.env.BATCHFLOW_PG_URL ?? "postgres://postgres@127.0.0.1:5432/test"
const table = "promise_policy_events"

const Events = Table.make(table, {
  columns: Schema.Struct({ id: Schema.Number, amount: Schema.Number }),
  key: ["id"]
})
const Missing = Table.make("promise_policy_no_such_table", {
  columns: Schema.Struct({ id: Schema.Number }),
  key: ["id"]
})

const pool = new pg.Pool({ connectionString: pgUrl, max: 4 })
const count = async () => Number((await pool.query(`SELECT count(*) AS n FROM ${table}`)).rows[0].n)
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

beforeEach(async () => {
  await pool.query(`DROP TABLE IF EXISTS ${table}`)
  await pool.query(
    `CREATE TABLE ${table} (id BIGINT PRIMARY KEY, amount DOUBLE PRECISION NOT NULL CHECK (amount >= 0))`
  )
})
afterAll(() => pool.end())

/** Holds an ACCESS EXCLUSIVE lock on the table in a session of its own until `release`. */
const lockTable = async () => {
  const session = await pool.connect()
  await session.query("BEGIN")
  await session.query(`LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`)
  return {
    release: async () => {
      await session.query("COMMIT")
      session.release()
    }
  }
}

/** Offers rows one by one, letting the engine run between them, until one is refused. */
const fill = async (flow: Flow, from: number): Promise<number> => {
  let id = from
  for (; id < from + 200; id++) {
    if (!flow.unsafeOffer(Events, { id, amount: 1 })) return id - from
    await sleep(2)
  }
  throw new Error("the buffer never filled")
}

const small = { flushSize: 2, bufferSize: 4, concurrency: 1, flushInterval: "5 millis" } as const

describe("buffer full", () => {
  it("unsafeOffer and trySubmit answer false when full; submit waits for room and then succeeds", async () => {
    const lock = await lockTable()
    const flow = await createBatchFlow({ backend: { type: "postgres", url: pgUrl }, ...small })
    try {
      const accepted = await fill(flow, 1)
      // The held batch and the buffer: a bounded number, at least the buffer.
      expect(accepted).toBeGreaterThanOrEqual(small.bufferSize)
      expect(accepted).toBeLessThan(50)
      expect(flow.unsafeOffer(Events, { id: 1000, amount: 1 })).toBe(false)
      expect(await flow.trySubmit(Events, { id: 1001, amount: 1 })).toBe(false)

      let done = false
      const waiting = flow.submit(Events, { id: 1002, amount: 1 }).then(() => {
        done = true
      })
      await sleep(200)
      expect(done).toBe(false) // still waiting for room
      await lock.release()
      await waiting
      await flow.flush()
      expect(await count()).toBe(accepted + 1) // the refused rows were not written
      expect(flow.stats()).toMatchObject({ accepted: accepted + 1, committed: accepted + 1 })
      expect(await flow.trySubmit(Events, { id: 1003, amount: 1 })).toBe(true)
    } finally {
      await lock.release().catch(() => undefined)
      await flow.close()
    }
  })

  it("with submitTimeout, a submit that finds no room rejects with BufferFull naming the target and the size", async () => {
    const lock = await lockTable()
    const flow = await createBatchFlow({
      backend: { type: "postgres", url: pgUrl },
      ...small,
      submitTimeout: "150 millis"
    })
    try {
      const accepted = await fill(flow, 1)
      const started = Date.now()
      const rejected = await flow.submit(Events, { id: 500, amount: 1 }).then(
        () => undefined,
        (error: unknown) => error
      )
      expect(Date.now() - started).toBeGreaterThanOrEqual(140)
      expect(rejected).toBeInstanceOf(BufferFull)
      expect(rejected).toMatchObject({ target: table, bufferSize: small.bufferSize, accepted: 0 })
      await expect(flow.write(Events, { id: 501, amount: 1 })).rejects.toBeInstanceOf(BufferFull)
      await lock.release()
      await flow.flush()
      expect(await count()).toBe(accepted)
    } finally {
      await lock.release().catch(() => undefined)
      await flow.close()
    }
  })
})

describe("onFailure", () => {
  it("every callback gets the BatchFailure of a failing batch; a throwing or rejecting one breaks nothing", async () => {
    const flow = await createBatchFlow({
      backend: { type: "postgres", url: pgUrl },
      flushInterval: "10 millis"
    })
    const seen: Array<BatchFailure> = []
    const thrower = flow.onFailure(() => {
      throw new Error("callback bug")
    })
    flow.onFailure(async () => {
      throw new Error("async callback bug")
    })
    const unsubscribe = flow.onFailure((failure) => {
      seen.push(failure)
    })
    try {
      // A CHECK violation: the bad row is isolated and reported, the good ones commit.
      await flow.submitAll(Events, [
        { id: 1, amount: 1 },
        { id: 2, amount: -5 },
        { id: 3, amount: 1 }
      ])
      await flow.flush()
      for (let i = 0; i < 100 && seen.length === 0; i++) await sleep(10)
      expect(seen.length).toBe(1)
      expect(seen[0]).toBeInstanceOf(BatchFailure)
      expect(seen[0]).toMatchObject({ target: table, rows: [{ id: 2, amount: -5 }], outcome: "failed" })
      expect(await count()).toBe(2)

      // The flow goes on after the throwing callbacks.
      thrower()
      await flow.write(Events, { id: 4, amount: 1 })
      expect(await count()).toBe(3)

      // A missing table: write rejects with the same failure the callback gets.
      const rejected = await flow.write(Missing, { id: 1 }).then(
        () => undefined,
        (error: unknown) => error
      )
      expect(rejected).toBeInstanceOf(BatchFailure)
      expect(rejected).toMatchObject({ target: "promise_policy_no_such_table", retryable: false })
      for (let i = 0; i < 100 && seen.length < 2; i++) await sleep(10)
      expect(seen.map((f) => f.target)).toEqual([table, "promise_policy_no_such_table"])
      expect(flow.stats().failed).toBe(2)

      // After unsubscribing, a callback is called no more.
      unsubscribe()
      await flow.write(Events, { id: 5, amount: -1 }).catch(() => undefined)
      await sleep(100)
      expect(seen.length).toBe(2)
    } finally {
      await flow.close()
    }
  })

  it("failures reported before the first callback are delivered to it; close waits for them", async () => {
    const flow = await createBatchFlow({
      backend: { type: "postgres", url: pgUrl },
      flushInterval: "10 millis"
    })
    await flow.submit(Missing, { id: 1 })
    await flow.flush()
    const seen: Array<string> = []
    flow.onFailure(async (failure) => {
      await sleep(50)
      seen.push(failure.reason)
    })
    await flow.submit(Missing, { id: 2 })
    await flow.close()
    expect(seen.length).toBe(2)
  })
})
