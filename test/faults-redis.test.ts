/**
 * Redis under faults: a private server (append-only file, fsync always, so a crash keeps what it
 * acknowledged) behind a fault proxy. The rows are `INCRBY key 1`, one key per row: not idempotent,
 * so a row applied twice shows as 2. After each fault: accepted = committed + failed +
 * unknown_outcome; every committed row is 1; no row reported failed was applied; none is 2; close
 * returned within closeTimeout + 1 s.
 */
import { Chunk, Effect, Exit, Fiber, Layer, Scope, Stream } from "effect"
import { BatchFlow, type BatchFlowConfig } from "effect-batchflow"
import * as Redis from "effect-batchflow/Redis"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type FaultProxy, startProxy } from "./fault/proxy.js"
import { sleep } from "./fault/reconcile.js"
import { type PrivateRedis, startRedis } from "./fault/servers.js"

describe.sequential("redis: truthful outcomes under faults", () => {
  let server: PrivateRedis
  let proxy: FaultProxy

  beforeAll(async () => {
    server = await startRedis({ appendonly: true })
    proxy = await startProxy(server.port)
  }, 60_000)

  afterAll(async () => {
    await proxy?.close()
    await server?.stop()
  }, 60_000)

  const scenario = async (
    name: string,
    rows: number,
    options: BatchFlowConfig.Options,
    fault: () => Promise<void>,
    closeTimeoutMillis: number,
    afterClose: () => Promise<void> = async () => {}
  ) => {
    proxy.pass()
    const prefix = `fault:${name}:`
    const Hits = Redis.incrBy(name, { prefix })
    const FlowLive = Redis.layer(options).pipe(
      Layer.provide(
        Redis.layerClient({
          host: "127.0.0.1",
          port: proxy.port,
          commandTimeout: "1 second",
          reconnectWait: "50 millis"
        })
      )
    )
    const { failures, stats, closeMillis } = await Effect.runPromise(
      Effect.gen(function* () {
        const scope = yield* Scope.make()
        const ctx = yield* Layer.buildWithScope(FlowLive, scope)
        const flow = ctx.unsafeMap.get(BatchFlow.BatchFlow.key) as BatchFlow.BatchFlow
        const collected = yield* Effect.fork(Stream.runCollect(flow.failures))
        let injected: Promise<void> | undefined
        for (let id = 0; id < rows; id++) {
          yield* flow.submit(Hits, { key: String(id), by: 1 })
          if (id === Math.floor(rows / 3)) injected = fault()
          if (id % 50 === 49) yield* Effect.sleep("5 millis")
        }
        if (injected !== undefined) yield* Effect.promise(() => injected!)
        const started = Date.now()
        yield* flow.close
        const closeMillis = Date.now() - started
        yield* Scope.close(scope, Exit.void)
        return {
          failures: Chunk.toReadonlyArray(yield* Fiber.join(collected)),
          stats: yield* flow.stats,
          closeMillis
        }
      })
    )
    await afterClose()
    const failed = new Set<string>()
    const unknown = new Set<string>()
    const reasons: Record<string, number> = {}
    for (const f of failures) {
      reasons[f.reason] = (reasons[f.reason] ?? 0) + f.rows.length
      for (const r of f.rows) (f.outcome === "failed" ? failed : unknown).add((r as { key: string }).key)
    }
    const values = new Map<string, number>()
    for (let from = 0; from < rows; from += 500) {
      const keys = Array.from({ length: Math.min(500, rows - from) }, (_, i) => `${prefix}${from + i}`)
      const got = (await server.command("MGET", ...keys)) as Array<string | null>
      for (const [i, v] of got.entries()) values.set(String(from + i), v === null ? 0 : Number(v))
    }
    const applied = (id: string) => values.get(id) ?? 0
    const problems: Array<string> = []
    if (stats.accepted !== rows) problems.push(`accepted ${stats.accepted}`)
    if (stats.accepted !== stats.committed + stats.failed + stats.unknownOutcome)
      problems.push("counts do not add up")
    const twice = [...values.values()].filter((v) => v > 1).length
    if (twice > 0) problems.push(`${twice} key(s) incremented twice`)
    const failedApplied = [...failed].filter((id) => applied(id) > 0).length
    if (failedApplied > 0) problems.push(`${failedApplied} row(s) reported failed were applied`)
    let missing = 0
    for (let id = 0; id < rows; id++)
      if (!failed.has(String(id)) && !unknown.has(String(id)) && applied(String(id)) !== 1) missing++
    if (missing > 0) problems.push(`${missing} committed row(s) not applied`)
    if (closeMillis > closeTimeoutMillis + 1_000) problems.push(`close took ${closeMillis} ms`)
    const unknownApplied = [...unknown].filter((id) => applied(id) > 0).length
    console.log(
      `redis ${name}: accepted ${stats.accepted}, committed ${stats.committed}, failed ${stats.failed}, unknown_outcome ${stats.unknownOutcome} (${unknownApplied} applied), failed found applied ${failedApplied}, close ${closeMillis} ms, reasons ${JSON.stringify(reasons)}`
    )
    expect(problems).toEqual([])
  }

  const retry = { maxAttempts: 10, backoffBase: "50 millis", maxBackoff: "500 millis" } as const

  it("crash and restart mid-flow", async () => {
    await scenario(
      "crash",
      2_000,
      { flushSize: 100, concurrency: 4, flushInterval: "20 millis", retry, timeout: "2 seconds" },
      async () => {
        await server.crash()
        await sleep(300)
        await server.start()
      },
      30_000
    )
  }, 60_000)

  it("a 5 s restart with the default retry: only commands in flight at the crash can be unknown_outcome", async () => {
    await scenario(
      "restart",
      2_000,
      {},
      async () => {
        await server.crash()
        await sleep(5_000)
        await server.start()
      },
      30_000
    )
  }, 90_000)

  it("connections cut mid-flow", async () => {
    await scenario(
      "cut",
      2_000,
      { flushSize: 100, concurrency: 4, flushInterval: "20 millis", retry, timeout: "2 seconds" },
      async () => {
        for (let i = 0; i < 3; i++) {
          proxy.cut()
          await sleep(100)
        }
      },
      30_000
    )
  }, 60_000)

  it("a black-holed server: close returns within closeTimeout + 1 s", async () => {
    await scenario(
      "blackhole",
      2_000,
      {
        flushSize: 100,
        concurrency: 4,
        flushInterval: "20 millis",
        retry,
        timeout: "1 second",
        closeTimeout: "2 seconds"
      },
      async () => proxy.blackhole(),
      2_000,
      async () => {
        proxy.cut()
        proxy.pass()
        await sleep(500)
      }
    )
  }, 60_000)
})
