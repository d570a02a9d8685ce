/**
 * Same-key ordering, for `ordered` targets when `concurrency > 1`: a group waits for the earlier
 * unfinished groups of its target that hold any of its keys, so rows with the same key are written in
 * submission order although several groups run at once. Bookkeeping is per group, never per submit.
 *
 * Two groups whose keys lie in disjoint ranges (all numbers, or all strings) cannot share a key, so
 * their keys are not registered at all: with increasing keys (ids, timestamps: events, logs) that is
 * every group, and a range costs two comparisons per row where registering costs four map operations
 * (set and get when taken, get and delete when finished).
 */
import type * as Target from "../Target.js"
import type { Group, KeyRange } from "./group.js"

/** @internal */
export class KeyOrdering {
  /** Per ordered target: key → the latest unfinished group holding it. */
  private readonly keyOwners = new Map<Target.Any, Map<unknown, Group>>()
  /** Per ordered target: its groups taken and not finished. */
  private readonly active = new Map<Target.Any, Set<Group>>()

  /**
   * Sets `group.deps` to the earlier unfinished groups it must wait for.
   *
   * Keys are registered lazily: a group taken while no other group of its target is running needs no
   * bookkeeping, nor does one whose key range is disjoint from those of the running groups. Its keys
   * are registered only when a later group's range overlaps it while it still runs.
   */
  order(group: Group): void {
    let active = this.active.get(group.target)
    if (active === undefined) {
      active = new Set()
      this.active.set(group.target, active)
    }
    let overlapping = false
    for (const running of active) {
      if (disjoint(running, group)) continue
      overlapping = true
      if (!running.keyed) this.registerKeys(running)
    }
    if (overlapping) this.registerKeys(group)
    active.add(group)
  }

  /** A group finished (committed or reported): later groups no longer wait for it. */
  finish(group: Group): void {
    if (group.keyed) this.releaseKeys(group)
    this.active.get(group.target)?.delete(group)
  }

  private registerKeys(group: Group): void {
    let owners = this.keyOwners.get(group.target)
    if (owners === undefined) {
      owners = new Map()
      this.keyOwners.set(group.target, owners)
    }
    const keyOf = group.target.keyOf as (row: unknown) => unknown
    let deps: Set<Group> | undefined
    for (const row of group.rows) {
      const key = keyOf(row)
      if (key === undefined) continue
      const owner = owners.get(key)
      if (owner !== undefined && owner !== group) {
        deps ??= new Set()
        deps.add(owner)
      }
      owners.set(key, group)
    }
    group.keyed = true
    if (deps !== undefined) group.deps = Array.from(deps)
  }

  private releaseKeys(group: Group): void {
    const owners = this.keyOwners.get(group.target)
    if (owners === undefined) return
    const keyOf = group.target.keyOf as (row: unknown) => unknown
    for (const row of group.rows) {
      const key = keyOf(row)
      if (key !== undefined && owners.get(key) === group) owners.delete(key)
    }
  }
}

/** Whether two groups' keys cannot meet: both have ranges of one kind, and the ranges do not overlap. */
const disjoint = (a: Group, b: Group): boolean => {
  const ra = rangeOf(a)
  const rb = rangeOf(b)
  return ra !== null && rb !== null && typeof ra.min === typeof rb.min && (ra.max < rb.min || rb.max < ra.min)
}

const rangeOf = (group: Group): KeyRange | null => {
  if (group.keyRange === undefined) group.keyRange = scanRange(group)
  return group.keyRange
}

/** The group's key range, or `null` when its keys are not all numbers or all strings. */
const scanRange = (group: Group): KeyRange | null => {
  const keyOf = group.target.keyOf as (row: unknown) => unknown
  let kind: "number" | "string" | undefined
  let min: number | string = 0
  let max: number | string = 0
  for (const row of group.rows) {
    const key = keyOf(row)
    if (key === undefined) continue // a key with a NULL part never matches another
    const type = typeof key
    if ((type !== "number" && type !== "string") || Number.isNaN(key)) return null
    if (kind === undefined) {
      kind = type as "number" | "string"
      min = max = key as number | string
    } else if (type !== kind) {
      return null
    } else if ((key as number | string) < min) {
      min = key as number | string
    } else if ((key as number | string) > max) {
      max = key as number | string
    }
  }
  // No key at all: nothing to order, a range no other can meet.
  return kind === undefined ? { min: Number.POSITIVE_INFINITY, max: Number.NEGATIVE_INFINITY } : { min, max }
}
