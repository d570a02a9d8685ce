/**
 * Planning one Redis batch: coalesce rows by key, turn them into commands, fuse where the final
 * state is the same. Each planned command remembers which input rows it stands for, so the outcome
 * of every command maps back to rows. Pure.
 */
import * as Coalesce from "../../Coalesce.js"
import type * as Retry from "../../Retry.js"
import type { Arg } from "./client.js"
import type { RedisTarget } from "./targets.js"

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
  /** The command's name as the target gave it (reported in errors). */
  readonly name: string
  /** The name as sent: lower case, the form ioredis looks its command tables up with. */
  readonly wire: string
  readonly args: ReadonlyArray<Arg>
  /** The Redis key, for same-key ordering of re-sends (`fusedKey` for fused multi-key commands). */
  readonly key: string
  readonly idempotent: boolean
  /**
   * The input row positions this command stands for: `rows` when given (coalesced rows, or the rows
   * of a same-key fused command), otherwise the `count` positions from `first`.
   */
  readonly rows: ReadonlyArray<number> | undefined
  readonly first: number
  readonly count: number
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
  wire: string,
  args: ReadonlyArray<Arg>,
  key: string,
  idempotent: boolean,
  rows: ReadonlyArray<number> | undefined,
  first: number,
  count: number
): Op => ({
  name,
  wire,
  args,
  key,
  idempotent,
  rows,
  first,
  count,
  status: "pending",
  maybeApplied: false,
  unknown: false,
  appliedOnce: false,
  sends: 0,
  error: undefined,
  classification: undefined
})

/** The input rows a command stands for, one at a time. @internal */
export const forEachRow = (o: Op, f: (index: number) => void): void => {
  if (o.rows !== undefined) for (let i = 0; i < o.rows.length; i++) f(o.rows[i]!)
  else for (let i = o.first; i < o.first + o.count; i++) f(i)
}

/** Lower-case command names, for the names a process sends (bounded: generic targets name them). */
const wireNames = new Map<string, string>()

/** @internal */
export const wireName = (name: string): string => {
  let wire = wireNames.get(name)
  if (wire === undefined) {
    wire = name.toLowerCase()
    if (wireNames.size < 256) wireNames.set(name, wire)
  }
  return wire
}

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
  const rowsIn = rows.length
  const rowsOut = units.length
  const fuse = target.fusion
  const ops: Array<Op> = []
  let args = 0
  if (fusion && fuse.kind === "multi") {
    // One flat argument array per command, each row appending its arguments; without coalescing a
    // command stands for a range of input rows, so no per-row bookkeeping at all.
    const wire = wireName(fuse.name)
    for (let start = 0; start < units.length; start += fusedRowsPerCommand) {
      const end = Math.min(start + fusedRowsPerCommand, units.length)
      const out: Array<Arg> = []
      for (let u = start; u < end; u++) fuse.append(units[u]!, out)
      args += out.length
      if (sources === undefined) {
        ops.push(op(fuse.name, wire, out, fusedKey, true, undefined, start, end - start))
      } else {
        const covered: Array<number> = []
        for (let u = start; u < end; u++) for (const r of sources[u]!) covered.push(r)
        ops.push(op(fuse.name, wire, out, fusedKey, true, covered, 0, covered.length))
      }
    }
    return { ops, rowsIn, rowsOut, fusedRows: rowsIn, fused: fuse.name, args, deduplicated, merged }
  }
  if (fusion && fuse.kind === "sameKey") {
    interface Entry {
      readonly args: Array<Arg>
      readonly rows: Array<number>
      count: number
    }
    const wire = wireName(fuse.name)
    const byKey = new Map<string, Entry>()
    const flush = (key: string, entry: Entry) => {
      args += entry.args.length
      ops.push(op(fuse.name, wire, entry.args, key, true, entry.rows, 0, entry.rows.length))
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
      fuse.append(unit, entry.args)
      if (sources === undefined) entry.rows.push(u)
      else for (const r of sources[u]!) entry.rows.push(r)
      entry.count++
    }
    for (const [key, entry] of byKey) flush(key, entry)
    return { ops, rowsIn, rowsOut, fusedRows: rowsIn, fused: fuse.name, args, deduplicated, merged }
  }
  let lastName = ""
  let lastWire = ""
  for (let u = 0; u < units.length; u++) {
    const unit = units[u]!
    const key = target.redisKey(unit)
    const commands = target.commandsFor(unit, key)
    if (commands.length === 0) continue
    const idempotent = target.idempotent(unit)
    const covered = sources === undefined ? undefined : sources[u]!
    for (let c = 0; c < commands.length; c++) {
      const command = commands[c]!
      if (command.name !== lastName) {
        lastName = command.name
        lastWire = wireName(lastName)
      }
      args += command.args.length
      ops.push(op(command.name, lastWire, command.args, key, idempotent, covered, u, 1))
    }
  }
  return { ops, rowsIn, rowsOut, fusedRows: 0, fused: undefined, args, deduplicated, merged }
}
