/**
 * Same-key ordering, for `ordered` targets when `concurrency > 1`: a group waits for the earlier
 * unfinished groups of its target that hold any of its keys, so rows with the same key are written in
 * submission order although several groups run at once. Bookkeeping is per group, never per submit.
 *
 * When a group is taken, it is compared with each running group of its target. Each group's keys are
 * read once, with their range when they are all numbers or all strings. Two groups whose ranges do not
 * overlap cannot share a key; when they overlap, only the keys inside the overlap are compared. Keys
 * that grow with time (ids, timestamps: events, logs, and W1) overlap only at the edges of batches, so
 * this costs about one key read and one comparison per row, and nothing when a group finishes.
 */
import type * as Target from "../../Target.js"
import type { Group, GroupKeys } from "./group.js"

/** @internal */
export class KeyOrdering {
  /** Per ordered target: its groups taken and not finished. */
  private readonly active = new Map<Target.Any, Set<Group>>()

  /**
   * Sets `group.deps` to the earlier unfinished groups it must wait for. A group taken while no
   * other group of its target runs reads no key at all.
   */
  order(group: Group): void {
    let active = this.active.get(group.target)
    if (active === undefined) {
      active = new Set()
      this.active.set(group.target, active)
    }
    let deps: Array<Group> | undefined
    for (const running of active) {
      if (!sharesKey(keysOf(running), keysOf(group))) continue
      deps ??= []
      deps.push(running)
    }
    if (deps !== undefined) group.deps = deps
    active.add(group)
  }

  /**
   * A group finished (committed or reported): later groups no longer wait for it. It lets go of its
   * own dependencies and keys too: a later group may still hold it in its `deps`, and while the flow
   * is busy every group can depend on the one before, so a finished group that kept its `deps` would
   * keep every earlier group (and their rows) alive in one chain.
   */
  finish(group: Group): void {
    this.active.get(group.target)?.delete(group)
    group.deps = noDeps
    group.keys = undefined
  }
}

const noDeps: ReadonlyArray<Group> = []

const keysOf = (group: Group): GroupKeys => {
  if (group.keys === undefined) group.keys = readKeys(group)
  return group.keys
}

/**
 * The group's keys (NULL keys left out: they never match), with their range when they are all numbers
 * or all strings, and whether they strictly increase (then the overlap with another group is found by
 * binary search). One comparison per row for increasing keys, two otherwise.
 */
const readKeys = (group: Group): GroupKeys => {
  const keyOf = group.target.keyOf as (row: unknown) => unknown
  const keys: Array<unknown> = []
  let kind: "number" | "string" | undefined
  let ranged = true
  let increasing = true
  let min: number | string = 0
  let max: number | string = 0
  for (const row of group.rows) {
    const key = keyOf(row)
    if (key === undefined) continue
    keys.push(key)
    if (!ranged) continue
    const type = typeof key
    if (
      (type !== "number" && type !== "string") ||
      Number.isNaN(key) ||
      (kind !== undefined && type !== kind)
    ) {
      ranged = false
      increasing = false
    } else if (kind === undefined) {
      kind = type as "number" | "string"
      min = max = key as number | string
    } else if (increasing && (key as number | string) > max) {
      max = key as number | string
    } else {
      increasing = false
      if ((key as number | string) < min) min = key as number | string
      else if ((key as number | string) > max) max = key as number | string
    }
  }
  return { keys, range: ranged && kind !== undefined ? { min, max } : undefined, increasing, set: undefined }
}

const sharesKey = (a: GroupKeys, b: GroupKeys): boolean => {
  if (a.keys.length === 0 || b.keys.length === 0) return false
  const ra = a.range
  const rb = b.range
  if (ra === undefined || rb === undefined) return commonKey(a, b, undefined, undefined)
  // All numbers against all strings: no key in common (keys keep their types apart).
  if (typeof ra.min !== typeof rb.min) return false
  // Strings compare as strings, so not Math.max / Math.min.
  let lo = ra.min
  if (rb.min > lo) lo = rb.min
  let hi = ra.max
  if (rb.max < hi) hi = rb.max
  if (lo > hi) return false
  if (a.increasing && b.increasing) return commonSorted(within(a, lo, hi), within(b, lo, hi))
  return commonKey(a, b, lo, hi)
}

/** The keys of an increasing group in `[lo, hi]`, found by binary search. */
const within = (g: GroupKeys, lo: number | string, hi: number | string): ReadonlyArray<number | string> => {
  const keys = g.keys as ReadonlyArray<number | string>
  let first = 0
  let last = keys.length
  while (first < last) {
    const mid = (first + last) >>> 1
    if (keys[mid]! < lo) first = mid + 1
    else last = mid
  }
  let end = first
  while (end < keys.length && keys[end]! <= hi) end++
  return keys.slice(first, end)
}

/** Whether two increasing lists share a key: one merge pass. */
const commonSorted = (a: ReadonlyArray<number | string>, b: ReadonlyArray<number | string>): boolean => {
  let i = 0
  let j = 0
  while (i < a.length && j < b.length) {
    if (a[i] === b[j]) return true
    if (a[i]! < b[j]!) i++
    else j++
  }
  return false
}

/**
 * Whether two groups share a key (within `[lo, hi]` when given): the smaller group's keys looked up
 * in the larger one's set, which is made once per group and kept for its later comparisons (a
 * group taken while three others run is compared three times).
 */
const commonKey = (
  a: GroupKeys,
  b: GroupKeys,
  lo: number | string | undefined,
  hi: number | string | undefined
): boolean => {
  const small = a.keys.length <= b.keys.length ? a : b
  const large = small === a ? b : a
  if (large.set === undefined) large.set = new Set(large.keys)
  const set = large.set
  for (const key of small.keys) {
    if (lo !== undefined && ((key as number | string) < lo || (key as number | string) > hi!)) continue
    if (set.has(key)) return true
  }
  return false
}
