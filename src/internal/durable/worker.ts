/**
 * The worker: reads a consumer group's entries, writes their rows through the flow, and acknowledges
 * an entry only once every row of it is committed or reported. Its pieces, top to bottom:
 *
 * - read: one fiber on a connection of its own (XREADGROUP blocks it) takes new entries (`>`), as
 *   many as there is room for (`room`: entries held, queued, being written or waiting to be written
 *   again);
 * - claim: every `claimInterval`, XAUTOCLAIM takes over entries idle for `minIdle` (a dead or closed
 *   consumer's, or one given back because a flow was closed), with their delivery counts (XPENDING; an
 *   entry whose count cannot be read is not written, it stays pending), no more than there is room for;
 * - keep: every `minIdle / 3`, the entries this worker holds are touched (`keepScript`: XCLAIM … JUSTID,
 *   which does not count a delivery, of the ids still pending for this consumer) so that no other
 *   worker claims an entry that is still being written; ids another consumer owns now are dropped;
 * - write: `concurrency` fibers take entries, decode them and call `flow.writeAll`. Rows reported
 *   with a transient failure (retryable reason, unknown outcome, `close_timeout`, the flow's
 *   `BufferFull`) are written again by the same writer after a backoff (`retryBackoff` doubling up to
 *   `maxRetryBackoff`, jittered), only they, until none is left: the entry stays held meanwhile (kept
 *   alive, no delivery counted, its room taken, so an outage stops the reads: backpressure), and the
 *   rows with a final failure wait for the settle. A closing worker stops retrying and leaves the
 *   entry pending, unsettled; a closed flow (`BatchFlowClosed`) gives it back at once and the worker
 *   takes no more entries. `maxDeliveries` thus counts real deliveries only (claims after a worker
 *   died or closed mid-write), never an outage;
 * - settle: one Lua script (`settleScript`) that does nothing when the entry is no longer pending for
 *   this consumer, else appends the dead letters (rows reported with a final failure) and then
 *   XACK + XDEL; a failing XADD aborts it before the XACK. With `deadLetter: "log"` the log lines come
 *   first.
 */
import * as Deferred from "effect/Deferred"
import * as Effect from "effect/Effect"
import * as Either from "effect/Either"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as FiberId from "effect/FiberId"
import * as Queue from "effect/Queue"
import type * as Scope from "effect/Scope"
import type * as BatchFlow from "../../BatchFlow.js"
import type * as Target from "../../Target.js"
import type { Service } from "../redis/client.js"
import { messageOf, RedisConnectionError } from "../redis/errors.js"
import { codecOf, Field, fieldsOf } from "./codec.js"
import {
  bounded,
  call,
  type Entry,
  entriesOfRead,
  keepScript,
  removeScript,
  type Stream,
  script,
  settleScript
} from "./commands.js"
import * as metrics from "./metrics.js"
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
  readonly retryBackoffMillis: number
  readonly maxRetryBackoffMillis: number
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
  /**
   * Writes of an entry's rows again after a transient failure (retryable reason, unknown outcome,
   * `close_timeout`, a full flow buffer), by the worker that holds it: one per retry. It keeps
   * growing while the database is down.
   */
  readonly retried: number
  /**
   * Entries given back unsettled, to be claimed again after `minIdle` (a new delivery): because the
   * flow was closed, or because the worker closed while they waited to be written again.
   */
  readonly returned: number
  /**
   * Entries this worker wrote but found no longer pending for it when settling them, or while they
   * waited to be written again (another worker claimed them, e.g. after a pause longer than
   * `minIdle`, or an earlier attempt whose answer was lost settled them): not acknowledged here.
   */
  readonly lost: number
}

interface DeadLetter {
  readonly reason: string
  readonly detail: string
  readonly rows: string
  readonly count: number
}

const End = Symbol("End")

/** The `WorkerStats` field each metrics event counts in. */
const counterOf = {
  read: "read",
  claimed: "claimed",
  acked: "acked",
  dead_lettered: "deadLettered",
  retried: "retried",
  returned: "returned",
  lost: "lost"
} as const satisfies Record<metrics.EntryEvent, keyof WorkerStats>

/** The dead-letter stream of a target's stream. */
export const deadLetterKey = (stream: string): string => `${stream}:dead`

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
      retried: 0,
      returned: 0,
      lost: 0
    }
    // Each count also goes to the target's metrics (metrics.ts): stats are this worker's, metrics
    // add up across the workers of a process.
    const record = metrics.recorder()
    const countEntries = (target: Target.Any, event: metrics.EntryEvent, n = 1) => {
      counters[counterOf[event]] += n
      record.entries(target, event, n)
    }
    const countRows = (target: Target.Any, outcome: metrics.RowOutcome, n: number) => {
      counters[outcome === "committed" ? "rowsCommitted" : "deadLetteredRows"] += n
      record.rows(target, outcome, n)
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
    // Its id, for CLIENT UNBLOCK at close (a blocked read then returns at once), read again after
    // every reconnect: a new connection has a new id.
    let readerId = -1
    const { redis: reader } = yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: async () => {
          const redis = commands.duplicate()
          redis.on("error", () => undefined)
          redis.setMaxListeners(0)
          await redis.connect()
          readerId = Number(await redis.call("client", "id"))
          redis.on("ready", () => {
            redis.call("client", "id").then(
              (id) => {
                readerId = Number(id)
              },
              () => undefined
            )
          })
          return { redis }
        },
        catch: connectionError
      }),
      ({ redis }) => Effect.sync(() => redis.disconnect())
    )

    // Entries held (queued, being written, or waiting to be written again after a transient failure)
    // are bounded by `capacity`: reads and claims ask for no more than the room left, so entries that
    // wait out an outage stop both. Counted, not a semaphore: a blocked read holds no permits (a read
    // and a claim answered at the same moment may each fill what was left: at most `count` over).
    const capacity = Math.max(settings.concurrency * 2, settings.count)
    let holding = 0
    const room = () => Math.min(settings.count, capacity - holding)
    const queue = yield* Queue.unbounded<Entry | typeof End>()
    /** Held entries waiting to be written again. */
    const retrying = new Set<Entry>()

    const hold = (entry: Entry) => {
      if (!held.get(entry.stream.key)!.has(entry.id)) holding++
      held.get(entry.stream.key)!.add(entry.id)
    }
    // A read with no room waits for room to be freed (or for closing), not polling.
    let roomFreed: Deferred.Deferred<void> | undefined
    const drop = (key: string, id: string) => {
      if (!held.get(key)!.delete(id)) return
      holding--
      if (roomFreed !== undefined) {
        Deferred.unsafeDone(roomFreed, Exit.void)
        roomFreed = undefined
      }
    }
    /**
     * Held entries whose settle has been sent (`key id`): a keep-alive round that Redis runs after
     * their XACK finds them no longer pending, and must not take that for another consumer's claim.
     */
    const settling = new Set<string>()
    const release = (entry: Entry) =>
      Effect.sync(() => {
        retrying.delete(entry)
        settling.delete(`${entry.stream.key} ${entry.id}`)
        drop(entry.stream.key, entry.id)
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
      const args: Array<string | number> = [
        2,
        entry.stream.key,
        entry.stream.deadKey,
        settings.group,
        settings.consumer,
        entry.id,
        toStream.length
      ]
      for (const d of toStream) {
        const record = [
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
        ]
        args.push(record.length, ...record)
      }
      // With `deadLetter: "log"` the log line is the record: written before the entry is settled.
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
      let attempts = 0
      const settle = Effect.suspend(() => {
        attempts++
        settling.add(`${entry.stream.key} ${entry.id}`)
        return script(commands, timeout, settleScript, args)
      })
      return logDead.pipe(
        Effect.zipRight(persist(`settling entry ${entry.id} of ${entry.stream.key}`, settle, () => stopping)),
        Effect.flatMap((settled) =>
          Number(settled) === 1
            ? Effect.sync(() => {
                const { target } = entry.stream
                countEntries(target, "acked")
                countEntries(target, "dead_lettered", dead.length)
                for (const d of dead) countRows(target, "dead_lettered", d.count)
                lastReason.delete(entry.id)
              })
            : Effect.zipRight(
                Effect.sync(() => {
                  countEntries(entry.stream.target, "lost")
                  lastReason.delete(entry.id)
                }),
                Effect.logWarning(
                  attempts > 1
                    ? `Durable worker: entry ${entry.id} of ${entry.stream.key} was no longer pending for ${settings.consumer} when settling it again: settled by the earlier attempt whose answer was lost, or claimed by another worker (which writes it again). Nothing more done.`
                    : `Durable worker: entry ${entry.id} of ${entry.stream.key} was written but is no longer pending for ${settings.consumer} (another worker claimed it, or it was settled): not acknowledged here.`
                )
              )
        ),
        Effect.catchAll((error) =>
          Effect.logWarning(
            `Durable worker: entry ${entry.id} of ${entry.stream.key} was written but could not be settled (${messageOf(error)}). It stays pending and will be written again after minIdle${toStream.length > 0 ? "; some of its dead letters may already be recorded and be recorded again then" : ""}, unless the last attempt did settle it and only its answer was lost.`
          )
        )
      )
    }

    /**
     * Leaves an entry pending, unsettled, to be claimed again after `minIdle` (a new delivery): its
     * flow is closed, or this worker closes while the entry waits to be written again.
     */
    const giveBack = (entry: Entry, reason: string, detail: string) =>
      Effect.zipRight(
        Effect.sync(() => {
          countEntries(entry.stream.target, "returned")
          if (lastReason.size > 10_000) lastReason.clear()
          lastReason.set(entry.id, reason)
        }),
        Effect.logWarning(
          `Durable worker ${settings.consumer}: entry ${entry.id} of ${entry.stream.key} given back unsettled (reason ${reason}, delivery ${entry.deliveries} of at most ${settings.maxDeliveries}): ${detail}. It stays pending and is claimed again after minIdle.`
        )
      )

    // A closed flow never writes again: entries taken now would only be given back, each claim a
    // delivery more, until maxDeliveries dead-letters them. So the worker stops taking any.
    let flowClosed = false
    const onFlowClosed = Effect.suspend(() => {
      if (flowClosed) return Effect.void
      flowClosed = true
      return Effect.logError(
        `Durable worker ${settings.consumer}: its flow is closed, so it takes no more entries and gives back those it holds, for other workers (close a worker before its flow).`
      )
    })

    // --------------------------------------------------------------------------- transient retries

    /** The wait before retry `n` (from 0): exponential from retryBackoff, capped, then half to all of it. */
    const backoff = (n: number) => {
      const full = Math.min(
        settings.maxRetryBackoffMillis,
        settings.retryBackoffMillis * 2 ** Math.min(n, 40)
      )
      return Math.max(1, Math.round(full * (0.5 + Math.random() / 2)))
    }

    // An outage is logged once per entry (its first transient failure), then in one line at most
    // every `retryLogMillis` for the whole worker, and once when it is over.
    const retryLogMillis = 5_000
    let lastRetryLog = 0
    const logRetry = (entry: Entry, retry: number, rows: number, reason: string, detail: string) =>
      Effect.suspend(() => {
        const now = Date.now()
        if (retry === 1) {
          lastRetryLog = now
          return Effect.logWarning(
            `Durable worker ${settings.consumer}: ${rows} row(s) of entry ${entry.id} of ${entry.stream.key} not written this time (reason ${reason}): ${detail}. The worker keeps the entry (no new delivery) and writes these rows again after a backoff (at most ${settings.maxRetryBackoffMillis} ms) until they are written; ${retrying.size} entry(ies) wait so, and they take the room of new ones.`
          )
        }
        if (now - lastRetryLog < retryLogMillis) return Effect.void
        lastRetryLog = now
        return Effect.logWarning(
          `Durable worker ${settings.consumer}: ${retrying.size} entry(ies) still wait to be written again (entry ${entry.id} of ${entry.stream.key}: retry ${retry}, ${rows} row(s), reason ${reason}): ${detail}`
        )
      })
    const transient = (f: {
      readonly retryable: boolean
      readonly outcome: string
      readonly reason: string
    }) => f.retryable || f.outcome === "unknown_outcome" || f.reason === "close_timeout"

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
        const codec = codecOf(target)
        const decoded = codec.decode(text)
        if (Either.isLeft(decoded))
          return yield* ack(entry, [whole(decoded.left.reason, decoded.left.detail)])
        const rows = decoded.right
        if (rows.length !== count) {
          return yield* ack(entry, [
            whole("undecodable", `the entry says ${fields[Field.count]} rows and holds ${rows.length}`)
          ])
        }
        if (rows.length === 0) return yield* ack(entry, [])
        /** A dead letter of `failed`, as the entry holds them (encoded side). */
        const deadOf = (reason: string, detail: string, failed: ReadonlyArray<unknown>): DeadLetter => {
          // A row the schema cannot encode again is unlikely (it was just decoded): then the entry's
          // own text, all of it, says what was lost.
          const encoded = Either.try(() => codec.encode(failed))
          return Either.isRight(encoded)
            ? { reason, detail, rows: encoded.right, count: failed.length }
            : {
                reason,
                detail: `${detail} (its ${failed.length} row(s) could not be encoded again: ${messageOf(encoded.left)}; rows holds the whole entry)`,
                rows: text,
                count: failed.length
              }
        }
        // Written until no row is left with a transient failure; those with a final one wait here.
        const dead: Array<DeadLetter> = []
        let failedRows = 0
        let toWrite: ReadonlyArray<unknown> = rows
        let retries = 0
        while (true) {
          const written = yield* Effect.either(flow.writeAll(target as Target.Target<unknown>, toWrite))
          let again: Array<unknown> = []
          let cause: { readonly reason: string; readonly detail: string } | undefined
          if (Either.isLeft(written)) {
            const error = written.left
            if (error._tag === "BatchFlowClosed") {
              yield* onFlowClosed
              return yield* giveBack(entry, "closed", error.message)
            }
            if (error._tag === "InvalidRow") {
              // The whole call is refused; validation does not change between attempts.
              dead.push(
                retries === 0
                  ? whole("invalid_row", error.message)
                  : deadOf("invalid_row", error.message, toWrite)
              )
              failedRows += toWrite.length
            } else {
              // BufferFull: the rows after the first `accepted` were not taken, and the outcome of
              // those taken is awaited by nobody: all of them again (harmless for idempotent targets).
              again = [...toWrite]
              cause = { reason: "buffer_full", detail: error.message }
            }
          } else {
            for (const failure of written.right) {
              if (transient(failure)) {
                for (const row of failure.rows) again.push(row)
                cause ??= { reason: failure.reason, detail: failure.message }
              } else {
                dead.push(deadOf(failure.reason, failure.message, failure.rows))
                failedRows += failure.rows.length
              }
            }
          }
          if (cause === undefined || again.length === 0) break
          retries++
          retrying.add(entry)
          yield* logRetry(entry, retries, again.length, cause.reason, cause.detail)
          if (!stopping) yield* pause(backoff(retries - 1))
          if (stopping) {
            return yield* giveBack(
              entry,
              cause.reason,
              `the worker closed while ${again.length} of its row(s) waited to be written again (retry ${retries}): ${cause.detail}`
            )
          }
          // Taken over by another worker (this one paused longer than minIdle): that one writes it now.
          if (!held.get(entry.stream.key)!.has(entry.id)) {
            countEntries(target, "lost")
            return yield* Effect.logWarning(
              `Durable worker ${settings.consumer}: entry ${entry.id} of ${entry.stream.key}, waiting to be written again, is no longer pending for it (claimed by another worker): not written again here.`
            )
          }
          countEntries(target, "retried")
          toWrite = again
        }
        if (retries > 0) {
          retrying.delete(entry)
          if (retrying.size === 0) {
            yield* Effect.logInfo(
              `Durable worker ${settings.consumer}: writes succeed again; no entry waits for a retry (entry ${entry.id} of ${entry.stream.key} settled after ${retries} retry(ies)).`
            )
          }
        }
        countRows(target, "committed", rows.length - failedRows)
        return yield* ack(entry, dead)
      }).pipe(Effect.ensuring(release(entry)))

    const writer = Effect.gen(function* () {
      while (true) {
        const next = yield* Queue.take(queue)
        if (next === End) return
        // A defect in one entry's write is logged; the entry stays pending; the writer goes on.
        yield* write(next).pipe(
          Effect.catchAllDefect((defect) =>
            Effect.logError(
              `Durable worker: writing entry ${next.id} of ${next.stream.key} died; it stays pending and is claimed again after minIdle.`,
              defect
            )
          )
        )
      }
    })

    // -------------------------------------------------------------------------------------- read

    const readLoop = Effect.gen(function* () {
      let failing = 0
      while (!stopping && !flowClosed) {
        const wanted = room()
        if (wanted <= 0) {
          if (roomFreed === undefined) roomFreed = Deferred.unsafeMake<void>(FiberId.none)
          const freed = roomFreed
          yield* Effect.raceAll([Deferred.await(freed), Deferred.await(stopped), Effect.sleep(1_000)])
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
        for (const entry of entries) {
          countEntries(entry.stream.target, "read")
          hold(entry)
        }
        yield* Queue.offerAll(queue, entries)
      }
    })

    // ------------------------------------------------------------------------------------- claim

    const claimStream = (stream: Stream) =>
      Effect.gen(function* () {
        let cursor = "0-0"
        for (let page = 0; page < 100 && !stopping && !flowClosed; page++) {
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
            const counts = yield* Effect.either(
              Effect.tryPromise({
                try: async () => {
                  const pipeline = commands.pipeline()
                  for (const [id] of fresh) pipeline.call("xpending", stream.key, settings.group, id, id, 1)
                  return (await bounded(commands, pipeline.exec(), timeout, "xpending")) ?? []
                },
                catch: (error) => error
              })
            )
            // Without its delivery count an entry is not written (maxDeliveries could not be applied):
            // it stays pending with this consumer and is claimed again after minIdle.
            const entries: Array<Entry> = []
            let unknown = 0
            let failure: unknown
            fresh.forEach(([id, fields], i) => {
              const reply = Either.isRight(counts) ? counts.right[i] : undefined
              const pending = (reply?.[0] ? undefined : reply?.[1]) as
                | Array<[string, string, number, number]>
                | undefined
              const deliveries = Number(pending?.[0]?.[3])
              if (pending?.[0]?.[1] !== settings.consumer || !(deliveries >= 1)) {
                unknown++
                failure ??= Either.isLeft(counts) ? counts.left : reply?.[0]
                return
              }
              entries.push({ stream, id: String(id), fields: fields!, deliveries })
            })
            if (unknown > 0) {
              yield* Effect.logWarning(
                `Durable worker: ${unknown} entry(ies) of ${stream.key} claimed but not written: their delivery count could not be read (${failure === undefined ? "not pending for this consumer any more" : messageOf(failure)}). They stay pending and are claimed again after minIdle.`
              )
            }
            countEntries(stream.target, "claimed", entries.length)
            for (const entry of entries) hold(entry)
            yield* Queue.offerAll(queue, entries)
          }
          cursor = String(next)
          if (cursor === "0-0") return
        }
      })

    const claimLoop = Effect.gen(function* () {
      while (!stopping && !flowClosed) {
        yield* pause(settings.claimIntervalMillis)
        if (stopping || flowClosed) return
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
    // An entry another consumer owns now is dropped from `held` (and its settle finds it not ours).
    const keepLoop = Effect.gen(function* () {
      const every = Math.max(Math.floor(settings.minIdleMillis / 3), 20)
      while (true) {
        yield* Effect.sleep(every)
        for (const [key, ids] of held) {
          if (ids.size === 0) continue
          const reply = yield* Effect.either(
            script(commands, timeout, keepScript, [1, key, settings.group, settings.consumer, ...ids])
          )
          if (Either.isLeft(reply) || !Array.isArray(reply.right)) continue
          // Settled by this worker meanwhile (its XACK ran first; its writer has let go of it, or is
          // about to): not lost.
          const lost = reply.right
            .map(String)
            .filter((id) => held.get(key)!.has(id) && !settling.has(`${key} ${id}`))
          if (lost.length === 0) continue
          for (const id of lost) drop(key, id)
          yield* Effect.logWarning(
            `Durable worker ${settings.consumer}: ${lost.length} entry(ies) of ${key} it was writing are no longer pending for it (claimed by another worker after a pause longer than minIdle, or settled): dropped, not acknowledged here (${lost.slice(0, 5).join(", ")}${lost.length > 5 ? ", …" : ""}).`
          )
        }
      }
    })

    // The finalizer comes first, so that the fibers are stopped whatever happens after they start.
    const fibers: {
      writers: Array<Fiber.RuntimeFiber<void>>
      read?: Fiber.RuntimeFiber<void>
      claim?: Fiber.RuntimeFiber<void>
      keep?: Fiber.RuntimeFiber<void>
    } = { writers: [] }
    /** Waits for a fiber; a defect is logged, never raised, so the rest of the cleanup runs. */
    const awaitFiber = (name: string, fiber: Fiber.RuntimeFiber<void> | undefined) =>
      fiber === undefined
        ? Effect.void
        : Effect.flatMap(Fiber.await(fiber), (exit) =>
            Exit.isFailure(exit) && !Exit.isInterrupted(exit)
              ? Effect.logError(`Durable worker ${settings.consumer}: its ${name} fiber failed`, exit.cause)
              : Effect.void
          )
    // Closing takes at most closeTimeout, whatever Redis does: every step gets what is left of it.
    yield* Effect.addFinalizer(() =>
      Effect.gen(function* () {
        const deadline = Date.now() + settings.closeTimeoutMillis
        const left = () => Math.max(0, deadline - Date.now())
        /** Awaits the fibers within what is left; false (and they are interrupted) past it. */
        const awaitWithin = (list: ReadonlyArray<readonly [string, Fiber.RuntimeFiber<void> | undefined]>) =>
          // Interruptible: a finalizer runs uninterruptibly, and the timeout must be able to stop the wait.
          Effect.forEach(list, ([name, fiber]) => awaitFiber(name, fiber), { discard: true }).pipe(
            Effect.interruptible,
            Effect.timeoutTo({ duration: left(), onSuccess: () => true, onTimeout: () => false }),
            Effect.tap((done) =>
              done
                ? Effect.void
                : Fiber.interruptAll(list.flatMap(([, fiber]) => (fiber === undefined ? [] : [fiber])))
            )
          )
        stopping = true
        yield* Deferred.succeed(stopped, undefined)
        yield* Effect.ignore(
          call(commands, Math.max(1, Math.min(timeout, left())), "client", ["UNBLOCK", readerId])
        )
        yield* awaitWithin([
          ["read", fibers.read],
          ["claim", fibers.claim]
        ])
        const writers = fibers.writers
        yield* Queue.offerAll(
          queue,
          writers.map(() => End)
        )
        const finished = yield* awaitWithin(writers.map((fiber) => ["writer", fiber] as const))
        if (!finished) {
          yield* Effect.logWarning(
            `Durable worker ${settings.consumer}: ${holding} entry(ies) still being written or settled after closeTimeout (${settings.closeTimeoutMillis} ms) are left unacknowledged: they stay pending and another worker claims them after minIdle and writes them again (rows the flow still commits meanwhile are written twice, harmless for an idempotent target).`
          )
        }
        if (fibers.keep !== undefined) yield* Fiber.interrupt(fibers.keep)
        // A consumer that holds nothing is removed from the group, so the group lists live workers.
        // One script per stream: checked and removed in one step, so no entry that becomes this
        // consumer's in between (a read or claim whose answer was lost) is dropped with it. Past the
        // deadline the consumer stays (harmless: an empty consumer).
        yield* Effect.forEach(
          keys,
          (key) =>
            left() === 0
              ? Effect.void
              : Effect.ignore(
                  script(commands, Math.min(timeout, left()), removeScript, [
                    1,
                    key,
                    settings.group,
                    settings.consumer
                  ])
                ),
          { discard: true }
        )
      })
    )

    for (let i = 0; i < settings.concurrency; i++) fibers.writers.push(yield* Effect.forkDaemon(writer))
    fibers.read = yield* Effect.forkDaemon(readLoop)
    fibers.claim = yield* Effect.forkDaemon(claimLoop)
    fibers.keep = yield* Effect.forkDaemon(keepLoop)

    return { stats: Effect.sync(() => ({ ...counters })) }
  })
