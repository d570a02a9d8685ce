import { describe, expect, it } from "@effect/vitest"
import { Schema } from "effect"
import { Target } from "effect-batchflow"
import { RowBuffer } from "../src/internal/engine/buffer.js"

const A = Target.make("a", { schema: Schema.Struct({ id: Schema.Number }) })
const B = Target.make("b", { schema: Schema.Struct({ id: Schema.Number }) })

const summary = (groups: ReturnType<RowBuffer<string>["take"]>) =>
  groups.map((g) => ({ target: g.target.name, rows: g.rows, acks: g.acks }))

describe("RowBuffer", () => {
  it("keeps arrival order across the end of the ring", () => {
    const buffer = new RowBuffer<string>(4)
    buffer.pushAll(A, [1, 2, 3], 0, 3, undefined)
    expect(summary(buffer.take(2))).toEqual([{ target: "a", rows: [1, 2], acks: undefined }])
    buffer.pushAll(A, [4, 5, 6], 0, 3, undefined)
    expect(buffer.size).toBe(4)
    expect(buffer.free).toBe(0)
    // Slots 2, 3, 0, 1: the batch wraps around the end.
    expect(summary(buffer.take(10))).toEqual([{ target: "a", rows: [3, 4, 5, 6], acks: undefined }])
    expect(buffer.size).toBe(0)
  })

  it("groups a mixed batch by target in first-seen order, with acks only where a row has one", () => {
    const buffer = new RowBuffer<string>(8)
    buffer.push(B, 1, undefined, undefined)
    buffer.push(A, 2, "ack-2", undefined)
    buffer.push(B, 3, undefined, undefined)
    buffer.push(A, 4, undefined, undefined)
    buffer.push(B, 5, undefined, undefined)
    expect(summary(buffer.take(5))).toEqual([
      { target: "b", rows: [1, 3, 5], acks: undefined },
      { target: "a", rows: [2, 4], acks: ["ack-2", undefined] }
    ])
    // The ack was taken with its row: later batches carry none.
    buffer.push(A, 6, undefined, undefined)
    expect(summary(buffer.take(1))).toEqual([{ target: "a", rows: [6], acks: undefined }])
  })

  it("takes part of a single-target run and leaves the rest, acks included", () => {
    const buffer = new RowBuffer<string>(3)
    buffer.push(A, 1, "x", undefined)
    buffer.push(A, 2, undefined, undefined)
    buffer.push(A, 3, "z", undefined)
    expect(summary(buffer.take(1))).toEqual([{ target: "a", rows: [1], acks: ["x"] }])
    expect(summary(buffer.take(1))).toEqual([{ target: "a", rows: [2], acks: undefined }])
    buffer.push(B, 4, undefined, undefined)
    expect(summary(buffer.take(3))).toEqual([
      { target: "a", rows: [3], acks: ["z"] },
      { target: "b", rows: [4], acks: undefined }
    ])
    expect(buffer.take(1)).toEqual([])
  })

  it("collects the distinct spans of the taken rows, up to the limit, and forgets them", () => {
    const buffer = new RowBuffer<string>(8)
    const span = (name: string) =>
      ({ _tag: "ExternalSpan", spanId: name, traceId: "t", sampled: true }) as never
    const [x, y, z] = [span("x"), span("y"), span("z")]
    buffer.push(A, 1, undefined, x)
    buffer.pushAll(A, [2, 3], 0, 2, y)
    buffer.push(A, 4, undefined, undefined)
    buffer.push(A, 5, undefined, z)
    const links = new Set()
    buffer.take(3, links as never, 10)
    expect([...links]).toEqual([x, y])
    const capped = new Set()
    buffer.take(2, capped as never, 0)
    expect(capped.size).toBe(0)
    // The span of row 5 was taken with its row (over the limit, so not linked): none is left.
    buffer.push(A, 6, undefined, undefined)
    const later = new Set()
    buffer.take(1, later as never, 10)
    expect(later.size).toBe(0)
  })
})
