/**
 * Planning one Redis batch: coalesce rows by key, turn them into commands, fuse where the final
 * state is the same. Each planned command remembers which input rows it stands for, so the outcome
 * of every command maps back to rows. Pure.
 */
import * as Coalesce from "../Coalesce.js"
import type * as Retry from "../Retry.js"
import type { Arg } from "./redisClient.js"
import type { RedisTarget } from "./redisTargets.js"

/** Arguments per fused command: big enough to amortise, small enough not to stall the server. */
const fusedRowsPerCommand = 1000

/**
 * The ordering key of fused multi-key commands: they may share keys, so they are ordered as if they
 * all wrote one key.
 *
 * @internal
 */
export const fusedKey = "\u0000fused"

/**
 * One planned command, with the state of its execution (one object per command: batches are large
 * and allocation is what costs on this path).
 *
 * @internal
 */
export interface Op {
  readonly name: string
  readonly args: ReadonlyArray<Arg>
  /** The Redis key, for same-key ordering of re-sends (`fusedKey` for fused multi-key commands). */
  readonly key: string
  readonly idempotent: boolean
  /** The input row position this command stands for, or the positions (coalesced or fused rows). */
  readonly rows: number | ReadonlyArray<number>
  status: "pending" | "applied" | "failed"
  /** Sent at least once without a "not applied" answer. */
  maybeApplied: boolean
  /** The last send's answer was lost. */
  unknown: boolean
  /** Redis answered OK to one of its sends (it may be re-sent later to keep same-key order). */
  appliedOnce: boolean
  sends: number
  error: unknown
  classification: Retry.Classification | undefined
}

const op = (
  name: string,
  args: ReadonlyArray<Arg>,
  key: string,
  idempotent: boolean,
  rows: number | ReadonlyArray<number>
): Op => ({
  name,
  args,
  key,
  idempotent,
  rows,
  status: "pending",
  maybeApplied: false,
  unknown: false,
  appliedOnce: false,
  sends: 0,
  error: undefined,
  classification: undefined
})

/** @internal */
export interface Plan {
  readonly ops: ReadonlyArray<Op>
  /** Rows in, and rows left after coalescing. */
  readonly rowsIn: number
  readonly rowsOut: number
  /** Rows written through fused commands. */
  readonly fusedRows: number
  /** The fused command's name (`MSET`, `DEL`, `UNLINK`, `ZADD`) when the batch was fused. */
  readonly fused: string | undefined
  /** Arguments of all the planned commands (keys included, command names not). */
  readonly args: number
  /** Rows coalesced away: dropped or replaced (`keepFirst`, `keepLast`), or folded into another. */
  readonly deduplicated: number
  readonly merged: number
}

/** @internal */
export const plan = <A>(target: RedisTarget<A>, rows: ReadonlyArray<A>, fusion: boolean): Plan => {
  let units = rows
  let sources: ReadonlyArray<ReadonlyArray<number>> | undefined
  let deduplicated = 0
  let merged = 0
  if (target.coalesce !== undefined) {
    const result = Coalesce.apply(target.coalesce, rows)
    units = result.rows
    sources = result.sources
    deduplicated = result.deduplicated
    merged = result.merged
  }
  const rowsOf = (u: number): number | ReadonlyArray<number> => (sources === undefined ? u : sources[u]!)
  const base = { rowsIn: rows.length, rowsOut: units.length, deduplicated, merged }
  const fuse = target.fusion
  if (fusion && fuse.kind === "multi") {
    const ops: Array<Op> = []
    for (let start = 0; start < units.length; start += fusedRowsPerCommand) {
      const end = Math.min(start + fusedRowsPerCommand, units.length)
      const args: Array<Arg> = []
      const covered: Array<number> = []
      for (let u = start; u < end; u++) {
        const unit = units[u]!
        for (const arg of fuse.args(unit)) args.push(arg)
        if (sources === undefined) covered.push(u)
        else for (const r of sources[u]!) covered.push(r)
      }
      ops.push(op(fuse.name, args, fusedKey, true, covered))
    }
    return { ...base, ops, fusedRows: rows.length, fused: fuse.name, args: argsOf(ops) }
  }
  if (fusion && fuse.kind === "sameKey") {
    interface Entry {
      readonly args: Array<Arg>
      readonly rows: Array<number>
      count: number
    }
    const byKey = new Map<string, Entry>()
    const ops: Array<Op> = []
    const flush = (key: string, entry: Entry) => {
      ops.push(op(fuse.name, entry.args, key, true, entry.rows))
    }
    for (let u = 0; u < units.length; u++) {
      const unit = units[u]!
      const key = target.redisKey(unit)
      let entry = byKey.get(key)
      if (entry === undefined || entry.count === fusedRowsPerCommand) {
        if (entry !== undefined) flush(key, entry)
        entry = { args: [...fuse.head(unit)], rows: [], count: 0 }
        byKey.set(key, entry)
      }
      for (const arg of fuse.args(unit)) entry.args.push(arg)
      if (sources === undefined) entry.rows.push(u)
      else for (const r of sources[u]!) entry.rows.push(r)
      entry.count++
    }
    for (const [key, entry] of byKey) flush(key, entry)
    return { ...base, ops, fusedRows: rows.length, fused: fuse.name, args: argsOf(ops) }
  }
  const ops: Array<Op> = []
  for (let u = 0; u < units.length; u++) {
    const unit = units[u]!
    const key = target.redisKey(unit)
    const commands = target.commandsFor(unit, key)
    if (commands.length === 0) continue
    const idempotent = target.idempotent(unit)
    const covered = rowsOf(u)
    for (const c of commands) ops.push(op(c.name, c.args, key, idempotent, covered))
  }
  return { ...base, ops, fusedRows: 0, fused: undefined, args: argsOf(ops) }
}

const argsOf = (ops: ReadonlyArray<Op>): number => {
  let n = 0
  for (const o of ops) n += o.args.length
  return n
}
