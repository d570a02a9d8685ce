import { describe, expect, it } from "@effect/vitest"
import { Schema } from "effect"
import { Target } from "effect-batchflow"
import { type Group, makeGroup } from "../src/internal/group.js"
import { KeyOrdering } from "../src/internal/ordering.js"

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

describe("same-key ordering bookkeeping", () => {
  it("groups with disjoint key ranges neither wait nor register their keys", () => {
    const numbers = new KeyOrdering()
    const a = group(1, 2, 3, 4, 5)
    const b = group(6, 7, 8, 9, 10)
    numbers.order(a)
    numbers.order(b)
    const strings = new KeyOrdering()
    const c = group("a", "b", "c")
    const d = group("d", "e")
    strings.order(c)
    strings.order(d)
    expect([a, b, c, d].map((g) => [g.deps.length, g.keyed])).toEqual([
      [0, false],
      [0, false],
      [0, false],
      [0, false]
    ])
    // A string range against number ranges: kinds differ, so the keys are registered.
    const e = group("x")
    numbers.order(e)
    expect([a.keyed, b.keyed, e.keyed, e.deps.length]).toEqual([true, true, true, 0])
  })

  it("a later group overlapping unregistered running groups waits for each one holding its keys", () => {
    const ordering = new KeyOrdering()
    const a = group(1, 2, 3, 4, 5)
    const b = group(6, 7, 8, 9, 10)
    ordering.order(a)
    ordering.order(b)
    const c = group(3, 8) // range 3..8 overlaps both
    ordering.order(c)
    expect(c.deps).toEqual([a, b])
    const d = group(4.5, 5.5) // overlaps a's and c's ranges, shares no key
    ordering.order(d)
    expect(d.deps).toEqual([])
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

  it("keys of mixed types or NaN fall back to registering every key; NULL keys never wait", () => {
    const ordering = new KeyOrdering()
    const a = group(1, "1", 7)
    const b = group(7, null)
    const c = group(Number.NaN, 1)
    ordering.order(a)
    ordering.order(b)
    ordering.order(c)
    expect(a.keyRange).toBeNull()
    expect(b.deps).toEqual([a])
    expect(c.keyRange).toBeNull()
    expect(c.deps).toEqual([a])
    const nulls = group(null, null)
    ordering.order(nulls)
    expect(nulls.deps).toEqual([])
  })
})
