/**
 * The producer's executor: each group of rows the engine hands it (one flush's rows of one target)
 * becomes ONE stream entry, appended by a short Lua script that first checks the stream's length
 * against `maxLength` (so the check and the append are one atomic step and one round trip). The
 * stream is never trimmed here: entries leave it only when a worker has acknowledged them.
 */
import { createHash, randomUUID } from "node:crypto"
import { hostname } from "node:os"
import * as Effect from "effect/Effect"
import type * as BatchExecutor from "../../BatchExecutor.js"
import type * as Retry from "../../Retry.js"
import type * as Target from "../../Target.js"
import type { Connection, Service } from "../redis/client.js"
import { classifyError, fateOf, messageOf } from "../redis/errors.js"
import { codecOf, Field } from "./codec.js"
import { StreamFull } from "./errors.js"

/** @internal */
export interface ProducerSettings {
  readonly prefix: string
  readonly maxLength: number
  readonly whenFull: "retry" | "fail"
  readonly producerId: string
}

const appendScript = `local n = redis.call('XLEN', KEYS[1])
if n >= tonumber(ARGV[1]) then return redis.error_reply('BATCHFLOW_FULL ' .. n) end
return redis.call('XADD', KEYS[1], '*', '${Field.producer}', ARGV[2], '${Field.seq}', ARGV[3], '${Field.count}', ARGV[4], '${Field.rows}', ARGV[5])`
const appendSha = createHash("sha1").update(appendScript).digest("hex")

/** The stream of a target. */
export const streamKey = (prefix: string, target: { readonly name: string }): string =>
  `${prefix}:${target.name}`

/** A producer id unique to this process: host, pid and a random part. */
export const defaultProducerId = (): string => `${hostname()}:${process.pid}:${randomUUID().slice(0, 8)}`

/** The rules of the producer's errors: a full stream per `whenFull`, Redis errors by their fate. */
export const rules = (whenFull: "retry" | "fail"): ReadonlyArray<Retry.Rule> => [
  (error) => {
    if (error instanceof StreamFull) return { retryable: whenFull === "retry", reason: "stream_full" }
    const classified = classifyError(error)
    if (classified === undefined) return undefined
    // An append whose answer was lost may have been made: re-sent only for idempotent targets.
    return fateOf(error) === "unknown" ? { ...classified, unknownOutcome: true } : classified
  }
]

/** Checks the server's persistence once: without AOF, a Redis restart loses accepted rows. */
export const checkPersistence = (service: Service): Effect.Effect<void> =>
  Effect.tryPromise(() => service.redis.call("config", "get", "appendonly")).pipe(
    Effect.flatMap((reply) => {
      const value = Array.isArray(reply) ? String(reply[1]) : undefined
      return value === "yes"
        ? Effect.void
        : Effect.logWarning(
            `Redis at ${service.address} runs without AOF (appendonly ${value ?? "unknown"}): rows a durable producer acknowledged are lost if Redis restarts. Start it with --appendonly yes (and --appendfsync always to keep every acknowledged append through a crash).`
          )
    }),
    Effect.catchAll((cause) =>
      Effect.logWarning(
        `Could not read Redis's persistence setting at ${service.address} (CONFIG GET appendonly: ${messageOf(cause.error)}); make sure AOF is on, or a Redis restart loses acknowledged rows.`
      )
    )
  )

/** The executor that appends each group of rows as one entry. */
export const make = (connection: Connection, settings: ProducerSettings): BatchExecutor.BatchExecutor => {
  // The first row's sequence number per rows array: an engine retry re-sends the same row ids.
  const seqs = new WeakMap<ReadonlyArray<unknown>, number>()
  let nextSeq = 0
  const warned = new Set<string>()
  const maxLength = String(settings.maxLength)

  const append = (target: Target.Any, rows: ReadonlyArray<unknown>) => {
    let seq = seqs.get(rows)
    if (seq === undefined) {
      seq = nextSeq
      nextSeq += rows.length
      seqs.set(rows, seq)
    }
    const key = streamKey(settings.prefix, target)
    const first = seq
    return Effect.flatMap(
      // A row its schema cannot encode fails the batch (an EncodeError: no retry rule matches it).
      Effect.try({ try: () => codecOf(target).encode(rows), catch: (error) => error }),
      (text) => {
        const args = [key, maxLength, settings.producerId, String(first), String(rows.length), text]
        return send(target, key, args)
      }
    )
  }

  const send = (target: Target.Any, key: string, args: ReadonlyArray<string>) =>
    Effect.flatMap(
      Effect.promise(async () => {
        const error = await connection.command({ wire: "evalsha", args: [appendSha, 1, ...args] })
        return error !== undefined && messageOf(error).startsWith("NOSCRIPT")
          ? connection.command({ wire: "eval", args: [appendScript, 1, ...args] })
          : error
      }),
      (error): Effect.Effect<void, unknown> => {
        if (error === undefined) return Effect.void
        const message = messageOf(error)
        if (message.startsWith("BATCHFLOW_FULL")) {
          return Effect.fail(
            new StreamFull({
              target: target.name,
              stream: key,
              length: Number(message.slice("BATCHFLOW_FULL ".length)),
              maxLength: settings.maxLength
            })
          )
        }
        return Effect.fail(error)
      }
    )

  return {
    rules: rules(settings.whenFull),
    execute: (target, rows) => {
      if (target.idempotentWrites || warned.has(target.name)) return append(target, rows)
      warned.add(target.name)
      return Effect.zipRight(
        Effect.logWarning(
          `Durable target "${target.name}" is not idempotent (no key, or Conflict.none): delivery is at least once, so a row may be written twice after a crash. Give it a key and Conflict.ignore / update.`
        ),
        append(target, rows)
      )
    }
  }
}
