/**
 * What the durable worker sends to Redis: each command bounded in time (ioredis, without re-sends,
 * never settles a command whose answer was lost), the Lua scripts that settle, touch and remove in
 * one atomic step each, and the parsing of XREADGROUP replies into entries.
 */
import { createHash } from "node:crypto"
import * as Effect from "effect/Effect"
import type { Redis as IORedis } from "ioredis"
import type * as Target from "../../Target.js"
import { messageOf } from "../redis/errors.js"

/** A target's stream, and its dead-letter stream. */
export interface Stream {
  readonly key: string
  readonly deadKey: string
  readonly target: Target.Any
}

/** An entry read or claimed: its fields as Redis returned them, and its delivery count. */
export interface Entry {
  readonly stream: Stream
  readonly id: string
  readonly fields: ReadonlyArray<unknown>
  readonly deliveries: number
}

/**
 * Settles with `promise`, or fails after `millis` or when the connection closes first: without
 * re-sending (the client's setting), ioredis never settles a command whose answer was lost.
 */
export const bounded = <A>(redis: IORedis, promise: Promise<A>, millis: number, what: string): Promise<A> =>
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
export const call = (redis: IORedis, millis: number, name: string, args: ReadonlyArray<string | number>) =>
  Effect.tryPromise({
    try: () => bounded(redis, redis.call(name, ...args), millis, name),
    catch: (error) => error
  })

/** A Lua script by its SHA1 (EVALSHA), loaded with EVAL when the server does not have it. */
interface Script {
  readonly text: string
  readonly sha: string
}

const scriptOf = (text: string): Script => ({ text, sha: createHash("sha1").update(text).digest("hex") })

/** Runs `script` with `args` (`numkeys, keys…, argv…`), bounded as `call`. */
export const script = (redis: IORedis, millis: number, s: Script, args: ReadonlyArray<string | number>) =>
  call(redis, millis, "evalsha", [s.sha, ...args]).pipe(
    Effect.catchIf(
      (error) => messageOf(error).startsWith("NOSCRIPT"),
      () => call(redis, millis, "eval", [s.text, ...args])
    )
  )

/**
 * Settles an entry in one atomic step: KEYS stream, dead-letter stream; ARGV group, consumer, id,
 * the number of dead letters, then each one as its field count and fields. Returns 0 without doing
 * anything when the entry is no longer pending for this consumer (another worker claimed it, or an
 * earlier attempt whose answer was lost settled it); otherwise appends the dead letters, then XACK
 * and XDEL, and returns 1. A failing XADD raises and ends the script before the XACK, so an entry is
 * never acknowledged without its dead letters (Redis does not undo the XADDs made before it).
 */
export const settleScript = scriptOf(`local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if #p == 0 or p[1][2] ~= ARGV[2] then return 0 end
local i = 5
for d = 1, tonumber(ARGV[4]) do
  local n = tonumber(ARGV[i])
  redis.call('XADD', KEYS[2], '*', unpack(ARGV, i + 1, i + n))
  i = i + n + 1
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
redis.call('XDEL', KEYS[1], ARGV[3])
return 1`)

/**
 * Touches the entries a worker holds, without counting a delivery: KEYS stream; ARGV group,
 * consumer, ids. Only the ids still pending for this consumer are claimed again (`XCLAIM … 0 id
 * JUSTID`, which resets their idle time); the others (claimed by another worker after a pause longer
 * than `minIdle`, or settled) are returned, untouched, for the worker to drop.
 */
export const keepScript = scriptOf(`local lost = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if #p == 1 and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return lost`)

/**
 * Removes a consumer from its group if it has no pending entry: KEYS stream; ARGV group, consumer.
 * XGROUP DELCONSUMER drops the consumer's pending entries with it, so the check and the removal are
 * one atomic step.
 */
export const removeScript = scriptOf(`local p = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if #p > 0 then return 0 end
return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])`)

/** `[[key, [[id, fields], …]], …]` (XREADGROUP) into entries. */
export const entriesOfRead = (reply: unknown, streams: ReadonlyMap<string, Stream>): Array<Entry> => {
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
