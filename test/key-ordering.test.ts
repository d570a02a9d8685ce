import { describe, expect, it } from "@effect/vitest"
import { Schema } from "effect"
import { Target } from "effect-batchflow"
import { type Group, makeGroup } from "../src/internal/engine/group.js"
import { KeyOrdering } from "../src/internal/engine/ordering.js"

const Items = Target.make("key_ordering_items", {
  schema: Schema.Struct({ id: Schema.Union(Schema.Number, Schema.String, Schema.Null) }),
  key: ["id"]
})

const group = (...ids: ReadonlyArray<number | string | null>): Group =>
  makeGroup(
    Items,
    ids.map((id) => ({ id })),
    undefined
  )

/** Orders the groups in turn and returns each one's dependencies, as indexes into `groups`. */
const depsOf = (ordering: KeyOrdering, groups: ReadonlyArray<Group>) => {
  for (const g of groups) ordering.order(g)
  return groups.map((g) => g.deps.map((d) => groups.indexOf(d)))
}

describe("same-key ordering bookkeeping", () => {
  it("a group waits for each running group that holds one of its keys, and only those", () => {
    expect(
      depsOf(new KeyOrdering(), [
        group(1, 2, 3, 4, 5),
        group(6, 7, 8, 9, 10),
        group(3, 8), // range 3..8 overlaps both, shares a key with both
        group(4.5, 5.5), // overlaps ranges, shares no key
        group(10, 11) // shares 10 with the second
      ])
    ).toEqual([[], [], [0, 1], [], [1]])
  })

  it("increasing keys: the overlap is found by binary search, up to its edges", () => {
    expect(
      depsOf(new KeyOrdering(), [
        group(1, 3, 5, 7, 9),
        group(2, 4, 6, 9),
        group(0, 10),
        group(-1, 1),
        group(9, 8)
      ])
    ).toEqual([[], [0], [], [0], [0, 1]])
  })

  it("strings compare as strings; numbers and strings are different keys", () => {
    expect(
      depsOf(new KeyOrdering(), [
        group("bench:9501", "bench:9999", "bench:10000"), // range "bench:10000".."bench:9999"
        group("bench:10001", "bench:10002"),
        group("bench:10002", "bench:9999"),
        group(10001, 9999)
      ])
    ).toEqual([[], [], [0, 1], []])
  })

  it("once a group finishes, later groups no longer wait for it", () => {
    const ordering = new KeyOrdering()
    const a = group(1, 2, 3)
    const b = group(2, 3, 4)
    ordering.order(a)
    ordering.order(b)
    expect(b.deps).toEqual([a])
    ordering.finish(a)
    const c = group(1, 2)
    ordering.order(c)
    expect(c.deps).toEqual([b])
  })

  it("keys of mixed types or NaN are compared one by one; NULL keys never wait", () => {
    const groups = [
      group(1, "1", 7),
      group(7, null),
      group(Number.NaN, "1"),
      group(Number.NaN),
      group(null, null)
    ]
    expect(depsOf(new KeyOrdering(), groups)).toEqual([[], [0], [0], [2], []])
    expect(groups[0]!.keys?.range).toBeUndefined()
    expect(groups[1]!.keys?.range).toEqual({ min: 7, max: 7 })
  })

  it("a group taken while none of its target runs reads no key", () => {
    const ordering = new KeyOrdering()
    const a = group(1, 2)
    ordering.order(a)
    expect(a.keys).toBeUndefined()
  })
})
