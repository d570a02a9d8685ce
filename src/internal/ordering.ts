/**
 * Same-key ordering, for `ordered` targets when `concurrency > 1`: a group waits for the earlier
 * unfinished groups of its target that hold any of its keys, so rows with the same key are written in
 * submission order although several groups run at once. Bookkeeping is per group, never per submit.
 */
import type * as Target from "../Target.js"
import type { Group } from "./group.js"

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
   * bookkeeping (its keys are registered only if a second group arrives while it still runs). With a
   * fast executor that is most groups.
   */
  order(group: Group): void {
    let active = this.active.get(group.target)
    if (active === undefined) {
      active = new Set()
      this.active.set(group.target, active)
    }
    if (active.size > 0) {
      for (const running of active) if (!running.keyed) this.registerKeys(running)
      this.registerKeys(group)
    }
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
