/**
 * Metrics against the real local Redis (db 14, prefix "mr:"): a flow over `Redis.makeExecutor()`
 * with `BatchFlowMetrics.layer({ includeTarget: true })` and `Prometheus.make` on port 0, scraped
 * over HTTP. Plain SETs are fused into MSETs, increments are coalesced, a transaction runs as
 * MULTI/EXEC; real WRONGTYPE and "not an integer" replies fail some commands (partial results), a
 * non-Redis target fails its whole attempt; a submit after close is rejected. Fails (never skips)
 * when Redis is down.
 */
import { describe, expect, it } from "@effect/vitest"
import { Chunk, Effect, Exit, Fiber, Logger, Schema, Scope, Stream } from "effect"
import { Target } from "effect-batchflow"
import * as Prometheus from "effect-batchflow/Prometheus"
import * as Redis from "effect-batchflow/Redis"
import {
  labelsFor,
  parsePrometheus,
  sampleValue,
  scrape,
  select,
  startObservedFlow,
  sumValues
} from "./metrics-helpers.js"
import { deleteKeys, direct, executorOn } from "./redis-helpers.js"

const DB = 14
const P = "mr:"

/** Fused: plain SETs become one MSET per batch. */
const Values = Redis.set("mr_values", { prefix: `${P}v:` })
/** Coalesced: same-key increments are summed, then sent as a pipeline of INCRBYs. */
const Counters = Redis.incrBy("mr_counters", { prefix: `${P}n:`, coalesce: "sum" })
/** Not fused (a TTL): a pipeline of `SET key value PX 60000`. */
const Sessions = Redis.set("mr_sessions", { prefix: `${P}s:`, ttl: "1 minute" })
/** MULTI/EXEC. */
const Transfers = Redis.incrBy("mr_transfers", { prefix: `${P}t:`, transaction: true })
/** INCRBY on a list and on a non-integer string: WRONGTYPE and "not an integer" replies. */
const Broken = Redis.incrBy("mr_broken", { prefix: `${P}b:` })
/** Fused ZADD (one per key) on a key that holds a list: WRONGTYPE for that key's rows. */
const Board = Redis.zadd("mr_board", { prefix: `${P}z:` })
/** Not a Redis target: the executor fails the whole attempt (`invalid_target`). */
const Plain = Target.make("mr_plain", { schema: Schema.Struct({ id: Schema.Number }), key: ["id"] })

describe("metrics on real Redis", () => {
  it.live(
    "fused, coalesced and transactional writes, induced command errors, rejection after close and in-flight on /metrics",
    () =>
      Effect.scoped(
        Effect.gen(function* () {
          const redis = yield* direct(DB)
          yield* deleteKeys(redis, `${P}*`)
          yield* Effect.promise(() =>
            redis.multi().rpush(`${P}b:list`, "x").set(`${P}b:text`, "abc").rpush(`${P}z:list`, "x").exec()
          )
          const server = yield* Prometheus.make({ port: 0, host: "127.0.0.1" })
          const { instanceId, tags } = labelsFor("metrics-redis")
          const executor = yield* executorOn(DB)
          const { flow, scope } = yield* startObservedFlow(
            { flushSize: 10, flushInterval: "1 hour", concurrency: 1 },
            executor,
            { database: "memory", instanceId, includeTarget: true }
          )
          const failuresFiber = yield* Effect.fork(Stream.runCollect(flow.failures))

          // F1, F2 (size) and F3 (manual): 25 plain SETs in batches of 10, 10 and 5, one MSET each.
          yield* flow.submitAll(
            Values,
            Array.from({ length: 25 }, (_, i) => ({ key: String(i), value: `v${i}` }))
          )
          yield* flow.flush
          // F4: two targets in one flush. 6 increments of 3 keys coalesce into 3 INCRBYs; 3 SET … PX.
          yield* flow.submitAll(
            Counters,
            [
              ["a", 1],
              ["a", 2],
              ["b", 3],
              ["a", 4],
              ["b", 5],
              ["c", 6]
            ].map(([key, by]) => ({ key: key as string, by: by as number }))
          )
          yield* flow.submitAll(
            Sessions,
            ["s1", "s2", "s3"].map((key) => ({ key, value: "user" }))
          )
          yield* flow.flush
          // F5: 3 INCRBYs in one MULTI/EXEC.
          yield* flow.submitAll(Transfers, [
            { key: "x", by: 1 },
            { key: "y", by: 2 },
            { key: "z", by: 3 }
          ])
          yield* flow.flush
          // F6: one good INCRBY, one on a list (WRONGTYPE), one on "abc" (ERR not an integer).
          yield* flow.submitAll(Broken, [
            { key: "ok", by: 5 },
            { key: "list", by: 1 },
            { key: "text", by: 1 }
          ])
          yield* flow.flush
          // F7: ZADD fused per key: the list key's two rows fail together (WRONGTYPE), "good" commits.
          yield* flow.submitAll(Board, [
            { key: "list", member: "m1", score: 1 },
            { key: "good", member: "m1", score: 1 },
            { key: "list", member: "m2", score: 2 }
          ])
          yield* flow.flush
          // F8: a target the Redis executor cannot write.
          yield* flow.submit(Plain, { id: 1 })
          yield* flow.flush
          yield* flow.close
          const rejected = yield* Effect.flip(flow.submit(Values, { key: "late", value: "late" }))
          expect(rejected._tag).toBe("BatchFlowClosed")
          yield* Scope.close(scope, Exit.void)
          const failures = Chunk.toReadonlyArray(yield* Fiber.join(failuresFiber))

          // Redis holds exactly what was written; the failed rows are reported by reason.
          const state = yield* Effect.promise(async () => ({
            values: await redis.mget(Array.from({ length: 25 }, (_, i) => `${P}v:${i}`)),
            counters: await redis.mget(`${P}n:a`, `${P}n:b`, `${P}n:c`),
            sessionTtls: await Promise.all(["s1", "s2", "s3"].map((k) => redis.pttl(`${P}s:${k}`))),
            transfers: await redis.mget(`${P}t:x`, `${P}t:y`, `${P}t:z`),
            broken: await redis.mget(`${P}b:ok`, `${P}b:text`),
            brokenList: await redis.type(`${P}b:list`),
            board: await redis.zrange(`${P}z:good`, "0", "-1"),
            boardList: await redis.lrange(`${P}z:list`, 0, -1)
          }))
          expect(state.values).toEqual(Array.from({ length: 25 }, (_, i) => `v${i}`))
          expect(state.counters).toEqual(["7", "8", "6"])
          for (const ttl of state.sessionTtls) expect(ttl > 0 && ttl <= 60_000).toBe(true)
          expect(state.transfers).toEqual(["1", "2", "3"])
          expect(state.broken).toEqual(["5", "abc"])
          expect(state.brokenList).toBe("list")
          expect(state.board).toEqual(["m1"])
          expect(state.boardList).toEqual(["x"])
          expect(failures.map((f) => [f.target, f.reason, f.rows.length]).sort()).toEqual([
            ["mr_board", "wrongtype", 2],
            ["mr_broken", "argument", 1],
            ["mr_broken", "wrongtype", 1],
            ["mr_plain", "invalid_target", 1]
          ])

          const response = yield* scrape(server.url)
          expect(response.status).toBe(200)
          const samples = parsePrometheus(response.text)
          const v = (name: string, labels: Record<string, string> = {}) =>
            sampleValue(samples, name, { ...tags, ...labels })
          const total = (name: string, labels: Record<string, string> = {}) =>
            sumValues(samples, name, { ...tags, ...labels })

          // Flushes: 2 by size, 6 manual; F4 holds two groups, every other flush one.
          expect(v("batchflow_flushes_total", { trigger: "size" })).toBe(2)
          expect(v("batchflow_flushes_total", { trigger: "manual" })).toBe(6)
          expect(select(samples, "batchflow_flushes_total", { ...tags, trigger: "close" })).toEqual([])
          expect(v("batchflow_pipeline_flush_size_count")).toBe(8)
          expect(v("batchflow_pipeline_flush_size_sum")).toBe(10 + 10 + 5 + 9 + 3 + 3 + 3 + 1)
          expect(v("batchflow_schema_groups_per_flush_count")).toBe(8)
          expect(v("batchflow_schema_groups_per_flush_sum")).toBe(9)
          expect(v("batchflow_schema_groups_per_flush_bucket", { le: "1" })).toBe(7)
          expect(v("batchflow_pipeline_process_duration_seconds_count", { status: "fail" })).toBe(3)
          expect(v("batchflow_pipeline_process_duration_seconds_count", { status: "success" })).toBe(5)

          // Executor calls (batch sizes per target, before coalescing): 10, 10, 5 | 6, 3 | 3 | 3 | 3 | 1.
          const batches = {
            mr_values: [3, 25],
            mr_counters: [1, 6],
            mr_sessions: [1, 3],
            mr_transfers: [1, 3],
            mr_broken: [1, 3],
            mr_board: [1, 3],
            mr_plain: [1, 1]
          }
          for (const [target, [count, sum]] of Object.entries(batches)) {
            expect(v("batchflow_batch_size_count", { target }), target).toBe(count)
            expect(v("batchflow_batch_size_sum", { target }), target).toBe(sum)
          }
          expect(total("batchflow_batch_size_count")).toBe(9)
          expect(total("batchflow_batch_size_sum")).toBe(44)
          expect(v("batchflow_batch_size_bucket", { target: "mr_values", le: "8" })).toBe(1)
          expect(v("batchflow_batch_size_bucket", { target: "mr_values", le: "16" })).toBe(3)
          // Failed commands make the call partial, not failed.
          expect(
            v("batchflow_execute_duration_seconds_count", { target: "mr_values", status: "success" })
          ).toBe(3)
          expect(
            v("batchflow_execute_duration_seconds_count", { target: "mr_broken", status: "partial" })
          ).toBe(1)
          expect(
            v("batchflow_execute_duration_seconds_count", { target: "mr_board", status: "partial" })
          ).toBe(1)
          expect(v("batchflow_execute_duration_seconds_count", { target: "mr_plain", status: "fail" })).toBe(
            1
          )

          // The Redis operation reports: one per attempt, labelled by how the commands were sent.
          const operations: ReadonlyArray<
            readonly [
              target: string,
              operation: string,
              attempts: number,
              input: number,
              output: number,
              commands: number,
              args: number
            ]
          > = [
            // 25 rows → 3 MSETs of key/value pairs.
            ["mr_values", "mset", 3, 25, 25, 3, 50],
            // 6 increments → 3 INCRBY key by.
            ["mr_counters", "pipeline", 1, 6, 3, 3, 6],
            // SET key value PX 60000.
            ["mr_sessions", "pipeline", 1, 3, 3, 3, 12],
            // 3 INCRBYs inside MULTI/EXEC (MULTI, EXEC and the marker key are not counted).
            ["mr_transfers", "multi_exec", 1, 3, 3, 3, 6],
            ["mr_broken", "pipeline", 1, 3, 3, 3, 6],
            // ZADD list 1 m1 2 m2, ZADD good 1 m1.
            ["mr_board", "zadd", 1, 3, 3, 2, 8]
          ]
          for (const [target, operation, attempts, input, output, commands, args] of operations) {
            const op = { target, backend: "redis", operation }
            const items = (kind: string) => ({ ...op, kind })
            expect(v("batchflow_operation_generated_items_count", items("input")), target).toBe(attempts)
            expect(v("batchflow_operation_generated_items_sum", items("input")), target).toBe(input)
            expect(v("batchflow_operation_generated_items_sum", items("output")), target).toBe(output)
            expect(v("batchflow_operation_generated_items_count", items("commands")), target).toBe(attempts)
            expect(v("batchflow_operation_generated_items_sum", items("commands")), target).toBe(commands)
            expect(v("batchflow_operation_generated_args_count", op), target).toBe(attempts)
            expect(v("batchflow_operation_generated_args_sum", op), target).toBe(args)
          }
          // Only these: one series set per target, no report for the non-Redis target, no SQL series.
          expect(
            new Set(
              select(samples, "batchflow_operation_generated_items_count", tags).map((s) => s.labels.target)
            )
          ).toEqual(new Set(operations.map(([target]) => target)))
          expect(select(samples, "batchflow_sql_generated_rows_count", tags)).toEqual([])
          expect(select(samples, "batchflow_sql_deduplicated_rows_total", tags)).toEqual([])

          // Errors. Failed Redis commands are settled inside the call (a partial result): each call
          // counts once per reason as `final:<reason>`. The non-Redis target's attempt failed.
          expect(v("batchflow_target_failures_total", { target: "mr_broken", reason: "wrongtype" })).toBe(1)
          expect(v("batchflow_target_failures_total", { target: "mr_broken", reason: "argument" })).toBe(1)
          expect(v("batchflow_target_failures_total", { target: "mr_board", reason: "wrongtype" })).toBe(1)
          expect(v("batchflow_target_failures_total", { target: "mr_plain", reason: "invalid_target" })).toBe(
            1
          )
          expect(total("batchflow_target_failures_total")).toBe(4)
          expect(
            v("batchflow_errors_total", { target: "mr_plain", error_type: "final:invalid_target" })
          ).toBe(1)
          expect(v("batchflow_errors_total", { target: "mr_broken", error_type: "final:wrongtype" })).toBe(1)
          expect(v("batchflow_errors_total", { target: "mr_broken", error_type: "final:argument" })).toBe(1)
          expect(v("batchflow_errors_total", { target: "mr_board", error_type: "final:wrongtype" })).toBe(1)
          expect(select(samples, "batchflow_errors_total", tags).length).toBe(4)
          expect(select(samples, "batchflow_target_retries_total", tags)).toEqual([])
          const rows = {
            mr_values: [25, 0],
            mr_counters: [6, 0],
            mr_sessions: [3, 0],
            mr_transfers: [3, 0],
            mr_broken: [1, 2],
            mr_board: [1, 2],
            mr_plain: [0, 1]
          }
          for (const [target, [committed, failed]] of Object.entries(rows)) {
            expect(total("batchflow_target_rows_total", { target, outcome: "committed" }), target).toBe(
              committed
            )
            expect(total("batchflow_target_rows_total", { target, outcome: "failed" }), target).toBe(failed)
          }

          // After close.
          expect(v("batchflow_submit_rejected_total", { reason: "closed" })).toBe(1)
          expect(v("batchflow_inflight_batches")).toBe(0)
          expect(v("batchflow_pipeline_queue_length")).toBe(0)
          expect(v("batchflow_executor_concurrency")).toBe(1)

          // The executor's own counters agree with what was reported.
          const stats = yield* executor.stats
          expect(stats.rowsIn).toBe(43)
          expect(stats.rowsOut).toBe(40)
          expect(stats.commands).toBe(3 + 3 + 3 + 3 + 3 + 2)
          expect(stats.transactions).toBe(1)
          expect(stats.failedRows).toBe(4)
          yield* deleteKeys(redis, `${P}*`)
        })
      ).pipe(Effect.provide(Logger.replace(Logger.defaultLogger, Logger.none)))
  )
})
