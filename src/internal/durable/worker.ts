/**
 * The worker: reads a consumer group's entries, writes their rows through the flow, and acknowledges
 * an entry only once every row of it is committed or reported. Its pieces, top to bottom:
 *
 * - read: one fiber on a connection of its own (XREADGROUP blocks it) takes new entries (`>`), as
 *   many as there is room for (`room`: entries held, queued or being written);
 * - claim: every `claimInterval`, XAUTOCLAIM takes over entries idle for `minIdle` (a dead consumer's,
 *   or one this worker gave back after a transient failure), with their delivery counts (XPENDING);
 * - keep: every `minIdle / 3`, the entries this worker holds are touched (XCLAIM … JUSTID, which does
 *   not count a delivery) so that no other worker claims an entry that is still being written;
 * - write: `concurrency` fibers take entries, decode them and call `flow.writeAll`;
 * - settle: committed → XACK + XDEL; rows reported with a final failure → the dead-letter stream, then
 *   XACK + XDEL (one MULTI); a transient failure (retryable, unknown outcome, closed flow) → left
 *   pending, to be claimed again after `minIdle`, until `maxDeliveries`.
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Fiber from "effect/Fiber"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import type { Redis as IORedis } from "ioredis"
import type * as BatchFlow from "../../BatchFlow.js"
import type * as Target from "../../Target.js"
import type { Service } from "../redis/client.js"
import { RedisConnectionError } from "../redis/errors.js"
import { codecOf, Field, fieldsOf } from "./codec.js"
import { streamKey } from "./producer.js"

/** @internal */
export interface WorkerSettings {
  readonly prefix: string
  readonly group: string
  readonly consumer: string
  readonly count: number
  readonly blockMillis: number
  readonly concurrency: number
  readonly minIdleMillis: number
  readonly claimIntervalMillis: number
  readonly maxDeliveries: number
  readonly deadLetter: "stream" | "log"
  readonly closeTimeoutMillis: number
  readonly commandTimeoutMillis: number
}

/**
 * Counters of one worker since it started.
 *
 * @since 0.1.0
 * @category models
 */
export interface WorkerStats {
  /** Entries read as new (XREADGROUP `>`). */
  readonly read: number
  /** Entries taken over from idle deliveries (XAUTOCLAIM). */
  readonly claimed: number
  /** Entries acknowledged (and deleted from their stream). */
  readonly acked: number
  /** Rows of acknowledged entries that the flow committed. */
  readonly rowsCommitted: number
  /** Dead-letter records written (or logged): one per failure reason of an entry, or per entry. */
  readonly deadLettered: number
  /** Rows in those records. */
  readonly deadLetteredRows: number
  /** Entries left pending after a transient failure, to be delivered again. */
  readonly returned: number
}

interface Stream {
  readonly key: string
  readonly deadKey: string
  readonly target: Target.Any
}

interface Entry {
  readonly stream: Stream
  readonly id: string
  readonly fields: ReadonlyArray<unknown>
  readonly deliveries: number
}

interface DeadLetter {
  readonly reason: string
  readonly detail: string
  readonly rows: string
  readonly count: number
}

const End = Symbol("End")

/** The dead-letter stream of a target's stream. */
export const deadLetterKey = (stream: string): string => `${stream}:dead`

const messageOf = (error: unknown): string => (error instanceof Error ? error.message : String(error))

/**
 * Settles with `promise`, or fails after `millis` or when the connection closes first: without
 * re-sending (the client's setting), ioredis never settles a command whose answer was lost.
 */
const bounded = <A>(redis: IORedis, promise: Promise<A>, millis: number, what: string): Promise<A> =>
  new Promise<A>((resolve, reject) => {
    const done = () => {
      clearTimeout(timer)
      redis.off("close", onClose)
    }
    const onClose = () => {
      done()
      reject(new Error(`${what}: the connection to Redis closed before it answered`))
    }
    const timer = setTimeout(() => {
      done()
      reject(new Error(`${what}: no answer from Redis within ${millis} ms`))
    }, millis)
    timer.unref()
    redis.once("close", onClose)
    promise.then(
      (value) => {
        done()
        resolve(value)
      },
      (error: unknown) => {
        done()
        reject(error)
      }
    )
  })

/** One command, bounded: a connection lost mid-command never settles it otherwise (no re-send). */
const call = (redis: IORedis, millis: number, name: string, args: ReadonlyArray<string | number>) =>
  Effect.tryPromise({
    try: () => bounded(redis, redis.call(name, ...args), millis, name),
    catch: (error) => error
  })

/** Commands as one MULTI/EXEC; fails when EXEC did not run or a command failed. */
const transaction = (
  redis: IORedis,
  millis: number,
  commands: ReadonlyArray<ReadonlyArray<string | number>>
) =>
  Effect.tryPromise({
    try: async () => {
      const multi = redis.multi()
      for (const [name, ...args] of commands) multi.call(String(name), ...args)
      const replies = await bounded(redis, multi.exec(), millis, "exec")
      if (replies === null) throw new Error("EXEC aborted")
      for (const [error] of replies) if (error) throw error
      return replies
    },
    catch: (error) => error
  })

/** `[[key, [[id, fields], …]], …]` (XREADGROUP) into entries. */
const entriesOfRead = (reply: unknown, streams: ReadonlyMap<string, Stream>): Array<Entry> => {
  const out: Array<Entry> = []
  if (!Array.isArray(reply)) return out
  for (const [key, entries] of reply as Array<[string, Array<[string, Array<unknown> | null]>]>) {
    const stream = streams.get(String(key))
    if (stream === undefined || !Array.isArray(entries)) continue
    for (const [id, fields] of entries) {
      if (Array.isArray(fields)) out.push({ stream, id: String(id), fields, deliveries: 1 })
    }
  }
  return out
}

/** Starts a worker's fibers in the scope; closing the scope stops them (see the module notes). */
export const start = (
  flow: BatchFlow.BatchFlow,
  service: Service,
  targets: ReadonlyArray<Target.Any>,
  settings: WorkerSettings
): Effect.Effect<{ readonly stats: Effect.Effect<WorkerStats> }, RedisConnectionError, Scope.Scope> =>
  Effect.gen(function* () {
    const commands = service.redis
    // Every bounded command listens for `close` while it runs.
    commands.setMaxListeners(Math.max(commands.getMaxListeners(), 200))
    const streams = new Map<string, Stream>()
    for (const target of targets) {
      const key = streamKey(settings.prefix, target)
      streams.set(key, { key, deadKey: deadLetterKey(key), target })
    }
    const keys = [...streams.keys()]
    const counters = {
      read: 0,
      claimed: 0,
      acked: 0,
      rowsCommitted: 0,
      deadLettered: 0,
      deadLetteredRows: 0,
      returned: 0
    }
    const timeout = settings.commandTimeoutMillis
    const held = new Map<string, Set<string>>(keys.map((k) => [k, new Set<string>()]))
    const lastReason = new Map<string, string>()
    let stopping = false
    const stopped = yield* Deferred.make<void>()
    const pause = (millis: number) => Effect.race(Effect.sleep(millis), Deferred.await(stopped))

    const createGroups = Effect.forEach(
      keys,
      (key) =>
        call(commands, timeout, "xgroup", ["CREATE", key, settings.group, "0", "MKSTREAM"]).pipe(
          Effect.catchIf(
            (error) => messageOf(error).startsWith("BUSYGROUP"),
            () => Effect.void
          )
        ),
      { discard: true }
    )
    const connectionError = (cause: unknown) => new RedisConnectionError({ address: service.address, cause })
    yield* Effect.mapError(createGroups, connectionError)

    // XREADGROUP BLOCK holds its connection: the reader gets one of its own.
    const { redis: reader, id: readerId } = yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: async () => {
          const redis = commands.duplicate()
          redis.on("error", () => undefined)
          redis.setMaxListeners(0)
          await redis.connect()
          // Its id, for CLIENT UNBLOCK at close: a blocked read then returns at once.
          return { redis, id: Number(await redis.call("client", "id")) }
        },
        catch: connectionError
      }),
      ({ redis }) => Effect.sync(() => redis.disconnect())
    )

    // Entries held (queued or being written) are bounded by `capacity`: reads and claims ask for no
    // more than the room left. Counted, not a semaphore: a blocked read holds no permits.
    const capacity = Math.max(settings.concurrency * 2, settings.count)
    let holding = 0
    const room = () => Math.min(settings.count, capacity - holding)
    const queue = yield* Queue.unbounded<Entry | typeof End>()

    const hold = (entry: Entry) => {
      if (!held.get(entry.stream.key)!.has(entry.id)) holding++
      held.get(entry.stream.key)!.add(entry.id)
    }
    const release = (entry: Entry) =>
      Effect.sync(() => {
        if (held.get(entry.stream.key)!.delete(entry.id)) holding--
      })

    /** Runs `effect` until it succeeds, backing off, while the worker runs (or until `until`). */
    const persist = <A>(what: string, effect: Effect.Effect<A, unknown>, until: () => boolean) =>
      Effect.gen(function* () {
        let wait = 100
        let logged = false
        while (true) {
          const result = yield* Effect.either(effect)
          if (Either.isRight(result)) return result.right
          if (until()) return yield* Effect.fail(result.left)
          if (!logged) {
            logged = true
            yield* Effect.logWarning(`Durable worker: ${what} failed, retrying: ${messageOf(result.left)}`)
          }
          yield* Effect.sleep(wait)
          wait = Math.min(wait * 2, 2000)
        }
      })

    // ------------------------------------------------------------------------------------ settle

    const ack = (entry: Entry, dead: ReadonlyArray<DeadLetter>) => {
      const fields = fieldsOf(entry.fields)
      const toStream = settings.deadLetter === "stream" ? dead : []
      const batch: Array<ReadonlyArray<string | number>> = toStream.map((d) => [
        "xadd",
        entry.stream.deadKey,
        "*",
        "reason",
        d.reason,
        "detail",
        d.detail,
        "entry",
        entry.id,
        Field.producer,
        fields[Field.producer] ?? "",
        Field.seq,
        fields[Field.seq] ?? "",
        "deliveries",
        entry.deliveries,
        Field.count,
        d.count,
        Field.rows,
        d.rows
      ])
      batch.push(["xack", entry.stream.key, settings.group, entry.id], ["xdel", entry.stream.key, entry.id])
      const logDead =
        settings.deadLetter === "log"
          ? Effect.forEach(
              dead,
              (d) =>
                Effect.logError(
                  `Durable worker: ${d.count} row(s) of entry ${entry.id} (target "${entry.stream.target.name}", producer ${fields[Field.producer] ?? "?"} seq ${fields[Field.seq] ?? "?"}) dropped after ${entry.deliveries} delivery(ies), reason ${d.reason}: ${d.detail}`
                ),
              { discard: true }
            )
          : Effect.void
      return persist(
        `acknowledging entry ${entry.id} of ${entry.stream.key}`,
        transaction(commands, timeout, batch),
        () => stopping
      ).pipe(
        Effect.zipRight(logDead),
        Effect.tap(() =>
          Effect.sync(() => {
            counters.acked++
            counters.deadLettered += dead.length
            for (const d of dead) counters.deadLetteredRows += d.count
            lastReason.delete(entry.id)
          })
        ),
        Effect.catchAll((error) =>
          Effect.logWarning(
            `Durable worker: entry ${entry.id} of ${entry.stream.key} was written but not acknowledged (${messageOf(error)}); it stays pending and will be written again after minIdle.`
          )
        )
      )
    }

    const giveBack = (entry: Entry, reason: string, detail: string) =>
      Effect.zipRight(
        Effect.sync(() => {
          counters.returned++
          if (lastReason.size > 10_000) lastReason.clear()
          lastReason.set(entry.id, reason)
        }),
        Effect.logWarning(
          `Durable worker: entry ${entry.id} of ${entry.stream.key} not written this time (reason ${reason}, delivery ${entry.deliveries} of at most ${settings.maxDeliveries}): ${detail}. It stays pending and is claimed again after minIdle.`
        )
      )

    // ------------------------------------------------------------------------------------- write

    const write = (entry: Entry): Effect.Effect<void> =>
      Effect.gen(function* () {
        const { target } = entry.stream
        const fields = fieldsOf(entry.fields)
        const text = fields[Field.rows] ?? ""
        const count = Number(fields[Field.count] ?? Number.NaN)
        const whole = (reason: string, detail: string): DeadLetter => ({
          reason,
          detail,
          rows: text,
          count: Number.isFinite(count) ? count : 0
        })
        if (entry.deliveries > settings.maxDeliveries) {
          const last = lastReason.get(entry.id)
          return yield* ack(entry, [
            whole(
              "max_deliveries",
              `delivered ${entry.deliveries} times (maxDeliveries ${settings.maxDeliveries})${last === undefined ? "" : `, last reason ${last}`}`
            )
          ])
        }
        const decoded = codecOf(target).decode(text)
        if (Either.isLeft(decoded)) return yield* ack(entry, [whole("undecodable", decoded.left)])
        const rows = decoded.right
        if (rows.length !== count) {
          return yield* ack(entry, [
            whole("undecodable", `the entry says ${fields[Field.count]} rows and holds ${rows.length}`)
          ])
        }
        if (rows.length === 0) return yield* ack(entry, [])
        const written = yield* Effect.either(flow.writeAll(target as Target.Target<unknown>, rows))
        if (Either.isLeft(written)) {
          const error = written.left
          return error._tag === "InvalidRow"
            ? yield* ack(entry, [whole("invalid_row", error.message)])
            : yield* giveBack(entry, error._tag === "BufferFull" ? "buffer_full" : "closed", error.message)
        }
        const failures = written.right
        const transient = failures.find(
          (f) => f.retryable || f.outcome === "unknown_outcome" || f.reason === "close_timeout"
        )
        if (transient !== undefined && entry.deliveries < settings.maxDeliveries) {
          return yield* giveBack(entry, transient.reason, transient.message)
        }
        const codec = codecOf(target)
        let failed = 0
        const dead = failures.map((f): DeadLetter => {
          failed += f.rows.length
          return { reason: f.reason, detail: f.message, rows: codec.encode(f.rows), count: f.rows.length }
        })
        counters.rowsCommitted += rows.length - failed
        return yield* ack(entry, dead)
      }).pipe(Effect.ensuring(release(entry)))

    const writer = Effect.gen(function* () {
      while (true) {
        const next = yield* Queue.take(queue)
        if (next === End) return
        yield* write(next)
      }
    })

    // -------------------------------------------------------------------------------------- read

    const readLoop = Effect.gen(function* () {
      let failing = 0
      while (!stopping) {
        const wanted = room()
        if (wanted <= 0) {
          yield* Effect.sleep(5)
          continue
        }
        const result = yield* Effect.either(
          call(reader, settings.blockMillis + timeout, "xreadgroup", [
            "GROUP",
            settings.group,
            settings.consumer,
            "COUNT",
            wanted,
            "BLOCK",
            settings.blockMillis,
            "STREAMS",
            ...keys,
            ...keys.map(() => ">")
          ])
        )
        if (Either.isLeft(result)) {
          if (failing++ === 0) {
            yield* Effect.logWarning(
              `Durable worker: reading ${keys.join(", ")} failed, retrying: ${messageOf(result.left)}`
            )
          }
          // A Redis restarted without its data has lost the groups too.
          if (messageOf(result.left).startsWith("NOGROUP")) yield* Effect.ignore(createGroups)
          yield* pause(Math.min(100 * 2 ** Math.min(failing, 5), 2000))
          continue
        }
        failing = 0
        const entries = entriesOfRead(result.right, streams)
        counters.read += entries.length
        for (const entry of entries) hold(entry)
        yield* Queue.offerAll(queue, entries)
      }
    })

    // ------------------------------------------------------------------------------------- claim

    const claimStream = (stream: Stream) =>
      Effect.gen(function* () {
        let cursor = "0-0"
        for (let page = 0; page < 100 && !stopping; page++) {
          const wanted = room()
          if (wanted <= 0) return
          const reply = yield* Effect.either(
            call(commands, timeout, "xautoclaim", [
              stream.key,
              settings.group,
              settings.consumer,
              settings.minIdleMillis,
              cursor,
              "COUNT",
              wanted
            ])
          )
          if (Either.isLeft(reply)) return yield* Effect.fail(reply.left)
          const [next, claimed] = reply.right as [string, Array<[string, Array<unknown> | null]>]
          const mine = held.get(stream.key)!
          const fresh = claimed.filter(([id, fields]) => Array.isArray(fields) && !mine.has(String(id)))
          if (fresh.length > 0) {
            const counts = yield* Effect.tryPromise({
              try: async () => {
                const pipeline = commands.pipeline()
                for (const [id] of fresh) pipeline.call("xpending", stream.key, settings.group, id, id, 1)
                return (await bounded(commands, pipeline.exec(), timeout, "xpending")) ?? []
              },
              catch: (error) => error
            }).pipe(Effect.orElseSucceed((): Array<[unknown, unknown]> => []))
            const entries = fresh.map(([id, fields], i): Entry => {
              const pending = counts[i]?.[1] as Array<[string, string, number, number]> | undefined
              const deliveries = Number(pending?.[0]?.[3] ?? 1)
              return { stream, id: String(id), fields: fields!, deliveries }
            })
            counters.claimed += entries.length
            for (const entry of entries) hold(entry)
            yield* Queue.offerAll(queue, entries)
          }
          cursor = String(next)
          if (cursor === "0-0") return
        }
      })

    const claimLoop = Effect.gen(function* () {
      while (!stopping) {
        yield* pause(settings.claimIntervalMillis)
        if (stopping) return
        for (const stream of streams.values()) {
          yield* claimStream(stream).pipe(
            Effect.catchAll((error) =>
              Effect.logWarning(
                `Durable worker: claiming idle entries of ${stream.key} failed: ${messageOf(error)}`
              )
            )
          )
        }
      }
    })

    // Touching held entries resets their idle time, so no worker takes over what is still being written.
    const keepLoop = Effect.gen(function* () {
      const every = Math.max(Math.floor(settings.minIdleMillis / 3), 20)
      while (true) {
        yield* Effect.sleep(every)
        const batch: Array<[string, Array<string>]> = []
        for (const [key, ids] of held) if (ids.size > 0) batch.push([key, [...ids]])
        if (batch.length === 0) continue
        yield* Effect.tryPromise(() => {
          const pipeline = commands.pipeline()
          for (const [key, ids] of batch) {
            pipeline.call("xclaim", key, settings.group, settings.consumer, 0, ...ids, "JUSTID")
          }
          return bounded(commands, pipeline.exec(), timeout, "xclaim")
        }).pipe(Effect.ignore)
      }
    })

    const writers = yield* Effect.forEach(Array.from({ length: settings.concurrency }), () =>
      Effect.forkDaemon(writer)
    )
    const readFiber = yield* Effect.forkDaemon(readLoop)
    const claimFiber = yield* Effect.forkDaemon(claimLoop)
    const keepFiber = yield* Effect.forkDaemon(keepLoop)

    yield* Effect.addFinalizer(() =>
      Effect.gen(function* () {
        stopping = true
        yield* Deferred.succeed(stopped, undefined)
        yield* Effect.ignore(call(commands, timeout, "client", ["UNBLOCK", readerId]))
        yield* Fiber.join(readFiber).pipe(Effect.ignore)
        yield* Fiber.join(claimFiber).pipe(Effect.ignore)
        yield* Queue.offerAll(
          queue,
          writers.map(() => End)
        )
        const finished = yield* Fiber.joinAll(writers).pipe(
          Effect.timeoutTo({
            duration: settings.closeTimeoutMillis,
            onSuccess: () => true,
            onTimeout: () => false
          })
        )
        if (!finished) {
          yield* Effect.logWarning(
            `Durable worker ${settings.consumer}: entries still being written after closeTimeout (${settings.closeTimeoutMillis} ms) stay pending; another worker claims them after minIdle.`
          )
          yield* Fiber.interruptAll(writers)
        }
        yield* Fiber.interrupt(keepFiber)
        // A consumer that holds nothing is removed from the group, so the group lists live workers.
        yield* Effect.forEach(
          keys,
          (key) =>
            call(commands, timeout, "xpending", [key, settings.group, "-", "+", 1, settings.consumer]).pipe(
              Effect.flatMap((pending) =>
                Array.isArray(pending) && pending.length === 0
                  ? call(commands, timeout, "xgroup", ["DELCONSUMER", key, settings.group, settings.consumer])
                  : Effect.void
              ),
              Effect.ignore
            ),
          { discard: true }
        )
      })
    )

    return { stats: Effect.sync(() => ({ ...counters })) }
  })
