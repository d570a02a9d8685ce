/**
 * The durable worker's metrics (re-exported by Durable.ts): what happened to entries and their rows,
 * per target. Updated per entry, never per row, whether or not a metrics layer is installed (as the
 * SQL backend's own counters): a counter update is cheaper than the Redis command that settles the
 * entry.
 */
import * as Metric from "effect/Metric"
import type * as Target from "../../Target.js"

/** @internal */
export const entries: Metric.Metric.Counter<number> = Metric.counter("batchflow_durable_entries_total", {
  description:
    "Durable worker entries per target and event: read, claimed, acked, dead_lettered (dead-letter records), retried, returned, lost.",
  incremental: true
})

/** @internal */
export const rows: Metric.Metric.Counter<number> = Metric.counter("batchflow_durable_rows_total", {
  description: "Rows of the entries durable workers wrote, per target and outcome: committed, dead_lettered.",
  incremental: true
})

/** @internal */
export type EntryEvent = "read" | "claimed" | "acked" | "dead_lettered" | "retried" | "returned" | "lost"

/** @internal */
export type RowOutcome = "committed" | "dead_lettered"

/** The tagged counters of each target, made once per target and event. @internal */
export const recorder = () => {
  const tagged = new Map<string, Metric.Metric.Counter<number>>()
  const of = (metric: Metric.Metric.Counter<number>, target: Target.Any, kind: string, value: string) => {
    const key = `${kind}\u0000${value}\u0000${target.name}`
    let counter = tagged.get(key)
    if (counter === undefined) {
      counter = metric.pipe(Metric.tagged("target", target.name), Metric.tagged(kind, value))
      tagged.set(key, counter)
    }
    return counter
  }
  return {
    entries: (target: Target.Any, event: EntryEvent, n = 1): void => {
      if (n > 0) of(entries, target, "event", event).unsafeUpdate(n, [])
    },
    rows: (target: Target.Any, outcome: RowOutcome, n: number): void => {
      if (n > 0) of(rows, target, "outcome", outcome).unsafeUpdate(n, [])
    }
  }
}
