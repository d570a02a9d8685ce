/**
 * The engine's buffer: a fixed-capacity ring of (target, row, ack, span) slots.
 *
 * Allocated once, at `bufferSize` slots, so accepting a row writes three array slots and allocates
 * nothing; taking a batch copies its rows out into arrays of exactly the batch's size (the arrays the
 * executor receives) and clears the slots. A growable array consumed from its head, which this
 * replaced, re-grew after every drain and compacted itself with `splice`: together about a third of
 * all bytes allocated per row in W0 (docs/development/architecture.md).
 */
import type * as Tracer from "effect/Tracer"
import type * as Target from "../../Target.js"

/** One target's rows of one taken batch, in arrival order. */
export interface Grouped<Ack> {
  readonly target: Target.Any
  readonly rows: Array<unknown>
  /** `undefined` when no row of the group has an ack. */
  readonly acks: Array<Ack | undefined> | undefined
}

/** @internal */
export class RowBuffer<Ack> {
  private readonly targets: Array<Target.Any | undefined>
  private readonly rows: Array<unknown>
  private readonly acks: Array<Ack | undefined>
  /** The span of the fiber that submitted each row, if it was in one: for the flush span's links. */
  private readonly spans: Array<Tracer.AnySpan | undefined>
  private head = 0
  /** Rows in the buffer. */
  size = 0
  /** Buffered rows that carry an ack. */
  private acked = 0
  /** Buffered rows that carry a span. */
  private spanned = 0

  constructor(readonly capacity: number) {
    this.targets = new Array<Target.Any | undefined>(capacity).fill(undefined)
    this.rows = new Array<unknown>(capacity).fill(undefined)
    this.acks = new Array<Ack | undefined>(capacity).fill(undefined)
    this.spans = new Array<Tracer.AnySpan | undefined>(capacity).fill(undefined)
  }

  get free(): number {
    return this.capacity - this.size
  }

  /** Adds one row. The caller checks that there is room. */
  push(target: Target.Any, row: unknown, ack: Ack | undefined, span: Tracer.AnySpan | undefined): void {
    let tail = this.head + this.size
    if (tail >= this.capacity) tail -= this.capacity
    this.targets[tail] = target
    this.rows[tail] = row
    if (ack !== undefined) {
      this.acks[tail] = ack
      this.acked++
    }
    if (span !== undefined) {
      this.spans[tail] = span
      this.spanned++
    }
    this.size++
  }

  /**
   * Adds `rows[from, to)` of one target, every one with the same `ack` (or none). The caller checks
   * that there is room.
   */
  pushAll(
    target: Target.Any,
    rows: ReadonlyArray<unknown>,
    from: number,
    to: number,
    span: Tracer.AnySpan | undefined,
    ack?: Ack | undefined
  ): void {
    let tail = this.head + this.size
    if (tail >= this.capacity) tail -= this.capacity
    for (let i = from; i < to; i++) {
      this.targets[tail] = target
      this.rows[tail] = rows[i]
      this.spans[tail] = span
      if (ack !== undefined) this.acks[tail] = ack
      if (++tail === this.capacity) tail = 0
    }
    if (ack !== undefined) this.acked += to - from
    if (span !== undefined) this.spanned += to - from
    this.size += to - from
  }

  /**
   * Takes the `n` oldest rows (at most `size`), grouped by target: arrival order is kept inside a
   * group, and groups come in the order their targets first appear. The distinct spans of their
   * submitters are added to `links`, up to `maxLinks`.
   */
  take(n: number, links?: Set<Tracer.AnySpan>, maxLinks = 0): ReadonlyArray<Grouped<Ack>> {
    n = Math.min(n, this.size)
    if (n === 0) return []
    const capacity = this.capacity
    const start = this.head
    if (this.spanned > 0) this.takeSpans(start, n, links, maxLinks)
    const first = this.targets[start]!
    let single = true
    for (let k = 1, i = start + 1; k < n; k++, i++) {
      if (i === capacity) i = 0
      if (this.targets[i] !== first) {
        single = false
        break
      }
    }
    const withAcks = this.acked > 0
    let groups: ReadonlyArray<Grouped<Ack>>
    if (single) {
      const rows = new Array<unknown>(n)
      const acks = withAcks ? new Array<Ack | undefined>(n) : undefined
      let acked = 0
      for (let k = 0, i = start; k < n; k++, i++) {
        if (i === capacity) i = 0
        rows[k] = this.rows[i]
        if (acks !== undefined) {
          const ack = this.acks[i]
          acks[k] = ack
          if (ack !== undefined) acked++
        }
        this.clear(i)
      }
      this.acked -= acked
      groups = [{ target: first, rows, acks: acked > 0 ? acks : undefined }]
    } else {
      const byTarget = new Map<Target.Any, Grouped<Ack> & { acked: number }>()
      for (let k = 0, i = start; k < n; k++, i++) {
        if (i === capacity) i = 0
        const target = this.targets[i]!
        let group = byTarget.get(target)
        if (group === undefined) {
          group = { target, rows: [], acks: withAcks ? [] : undefined, acked: 0 }
          byTarget.set(target, group)
        }
        group.rows.push(this.rows[i])
        if (group.acks !== undefined) {
          const ack = this.acks[i]
          group.acks.push(ack)
          if (ack !== undefined) group.acked++
        }
        this.clear(i)
      }
      groups = Array.from(byTarget.values(), ({ target, rows, acks, acked }) => {
        this.acked -= acked
        return { target, rows, acks: acked > 0 ? acks : undefined }
      })
    }
    this.head = start + n >= capacity ? start + n - capacity : start + n
    this.size -= n
    if (this.size === 0) this.head = 0
    return groups
  }

  private takeSpans(
    start: number,
    n: number,
    links: Set<Tracer.AnySpan> | undefined,
    maxLinks: number
  ): void {
    for (let k = 0, i = start; k < n; k++, i++) {
      if (i === this.capacity) i = 0
      const span = this.spans[i]
      if (span === undefined) continue
      this.spans[i] = undefined
      this.spanned--
      if (links !== undefined && links.size < maxLinks) links.add(span)
    }
  }

  /** Empties the slot so the row can be collected (spans are cleared by `takeSpans`). */
  private clear(i: number): void {
    this.targets[i] = undefined
    this.rows[i] = undefined
    this.acks[i] = undefined
  }
}
