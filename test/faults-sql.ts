/**
 * The SQL fault scenarios, run for one backend by faults-pg.test.ts and faults-mysql.test.ts against a
 * private server behind a fault proxy. Each ends with `problems(...)` empty: the flow's report is true.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { runChild } from "./fault/child.js"
import { type FaultProxy, startProxy } from "./fault/proxy.js"
import {
  createTable,
  lockTable,
  problems,
  runScenario,
  type Scenario,
  type Server,
  sleep,
  summary,
  tableIds
} from "./fault/reconcile.js"
import type { PrivateMariaDb, PrivatePostgres } from "./fault/servers.js"

const retry = { maxAttempts: 10, backoffBase: "50 millis", maxBackoff: "500 millis" } as const

export const sqlFaults = (
  dialect: "pg" | "mysql",
  start: () => Promise<PrivatePostgres | PrivateMariaDb>,
  /** MySQL: through the client (`Mysql` option `direct: false`) instead of the default direct path. */
  throughClient = false
) =>
  describe.sequential(`${dialect}${throughClient ? " client" : ""}: truthful outcomes under faults`, () => {
    let target: Server
    let proxy: FaultProxy

    beforeAll(async () => {
      target = { dialect, server: await start() }
      proxy = await startProxy(target.server.port)
    }, 90_000)

    afterAll(async () => {
      await proxy?.close()
      await target?.server.stop()
    }, 60_000)

    const check = async (name: string, scenario: Scenario, closeTimeoutMillis: number) => {
      proxy.pass()
      // The scenario's flow options go to `Mysql.layer`, which takes the statement option `direct` too.
      const flow = throughClient ? ({ ...scenario.flow, direct: false } as Scenario["flow"]) : scenario.flow
      const outcome = await runScenario(target, proxy, { ...scenario, flow })
      console.log(summary(`${dialect}${throughClient ? " client" : ""} ${name}`, outcome))
      expect(problems(outcome, scenario.rows, closeTimeoutMillis)).toEqual([])
      return outcome
    }

    for (const conflict of ["none", "ignore"] as const) {
      it(`crash and restart mid-flow (conflict ${conflict})`, async () => {
        await check(
          `crash/${conflict}`,
          {
            table: `fault_crash_${conflict}`,
            conflict,
            rows: 3_000,
            poolSize: 4,
            flow: { flushSize: 100, concurrency: 4, flushInterval: "20 millis", retry, timeout: "2 seconds" },
            startAt: 1_000,
            fault: async () => {
              await target.server.crash()
              await sleep(500)
              await target.server.start()
            }
          },
          30_000
        )
      }, 60_000)
    }

    for (const conflict of ["ignore", "none"] as const) {
      it(`a 5 s restart mid-flow with the default retry (conflict ${conflict}): every row written or, if in flight at the crash and not idempotent, unknown_outcome`, async () => {
        const outcome = await check(
          `5 s restart, defaults/${conflict}`,
          {
            table: `fault_restart_${conflict}`,
            conflict,
            rows: 3_000,
            poolSize: 4,
            flow: {},
            startAt: 1_000,
            fault: async () => {
              await target.server.crash()
              await sleep(5_000)
              await target.server.start()
            }
          },
          30_000
        )
        expect(outcome.failed).toBe(0)
        if (conflict === "ignore") expect(outcome.unknownOutcome).toBe(0)
      }, 90_000)
    }

    it("connections cut mid-flow", async () => {
      await check(
        "cut",
        {
          table: "fault_cut",
          conflict: "none",
          rows: 3_000,
          poolSize: 4,
          flow: { flushSize: 100, concurrency: 4, flushInterval: "20 millis", retry, timeout: "2 seconds" },
          startAt: 1_000,
          fault: async () => {
            for (let i = 0; i < 3; i++) {
              proxy.cut()
              await sleep(100)
            }
          }
        },
        30_000
      )
    }, 60_000)

    it("a statement slower than timeout is ended by the server, retried, and written once", async () => {
      let release: (() => Promise<void>) | undefined
      const outcome = await check(
        "slow statement",
        {
          table: "fault_slow",
          conflict: "none",
          rows: 1_000,
          // Pool size = concurrency: no free connection for a client-side cancel.
          poolSize: 2,
          flow: { flushSize: 100, concurrency: 2, flushInterval: "20 millis", retry, timeout: "1 second" },
          startAt: 300,
          fault: async () => {
            release = await lockTable(target, "fault_slow")
            await sleep(2_500)
            await release()
            release = undefined
          }
        },
        30_000
      )
      // The server's own deadline rolled the statements back: every row committed, none uncertain.
      expect(outcome.failed + outcome.unknownOutcome).toBe(0)
      expect(outcome.reasons).toEqual({})
    }, 60_000)

    it("close under load with a short closeTimeout keeps its deadline and tells the truth", async () => {
      let release: (() => Promise<void>) | undefined
      const outcome = await check(
        "close under load",
        {
          table: "fault_close",
          conflict: "none",
          rows: 5_000,
          poolSize: 4,
          pace: { rows: 500, millis: 1 },
          flow: {
            flushSize: 200,
            bufferSize: 10_000,
            concurrency: 4,
            flushInterval: "20 millis",
            retry,
            timeout: "5 seconds",
            closeTimeout: "300 millis"
          },
          startAt: 1,
          fault: async () => {
            release = await lockTable(target, "fault_close")
          },
          // The statements the flow gave up on still run; let them end before the table is read.
          afterClose: async () => {
            await release?.()
            await sleep(1_000)
          }
        },
        300
      )
      expect(outcome.unknownOutcome + outcome.failed).toBeGreaterThan(0)
      expect(outcome.reasons.close_timeout ?? 0).toBeGreaterThan(0)
    }, 60_000)

    it("a program whose server goes dark exits by itself after close (Release.bounded)", async () => {
      const table = "fault_exit"
      await createTable(target, table)
      const child = await runChild("test/fault/scripts/blackhole-exit.ts", {
        env: { DIALECT: dialect, PORT: String(target.server.port), TABLE: table },
        timeoutMs: 30_000
      })
      expect(child.exitedByItself, `the child did not exit by itself:\n${child.stderr}`).toBe(true)
      expect(child.code, child.stderr).toBe(0)
      const line = child.stdout.split("\n").find((l) => l.startsWith("RESULT "))
      expect(line, child.stdout + child.stderr).toBeDefined()
      const result = JSON.parse(line!.slice("RESULT ".length)) as {
        closeMillis: number
        scopeMillis: number
        stats: { accepted: number; committed: number; failed: number; unknownOutcome: number }
        failed: Array<number>
        unknown: Array<number>
        openSockets: number
      }
      console.log(
        `${dialect} black hole, child process: ${JSON.stringify({ ...result, failed: result.failed.length, unknown: result.unknown.length })}, exited after ${child.durationMs} ms`
      )
      // close within closeTimeout (2 s) + 1 s; the client's release within its own bound (1 s) + 1 s.
      expect(result.closeMillis).toBeLessThanOrEqual(3_000)
      expect(result.scopeMillis - result.closeMillis).toBeLessThanOrEqual(2_000)
      expect(result.openSockets).toBe(0)
      const { stats } = result
      expect(stats.accepted).toBe(2_000)
      expect(stats.accepted).toBe(stats.committed + stats.failed + stats.unknownOutcome)
      const inTable = await tableIds(target, table)
      expect(result.failed.filter((id) => inTable.has(id))).toEqual([])
      const reported = new Set([...result.failed, ...result.unknown])
      const missing = Array.from({ length: 2_000 }, (_, id) => id).filter(
        (id) => !reported.has(id) && !inTable.has(id)
      )
      expect(missing).toEqual([])
    }, 60_000)

    it("a black-holed server: close returns within closeTimeout + 1 s and every row is accounted for", async () => {
      await check(
        "black hole",
        {
          table: "fault_blackhole",
          conflict: "none",
          rows: 2_000,
          poolSize: 4,
          flow: {
            flushSize: 100,
            concurrency: 4,
            flushInterval: "20 millis",
            retry,
            timeout: "1 second",
            closeTimeout: "2 seconds"
          },
          startAt: 500,
          fault: async () => {
            proxy.blackhole()
          },
          afterClose: async () => {
            // Undo the black hole and let the abandoned statements end (the server kept the data it got).
            proxy.cut()
            proxy.pass()
            await sleep(1_500)
          }
        },
        2_000
      )
    }, 60_000)
  })
