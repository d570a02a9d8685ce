import { readFileSync } from "node:fs"
import { describe, expect, it } from "@effect/vitest"
import * as BatchFlowMetrics from "effect-batchflow/BatchFlowMetrics"

const read = (path: string) => readFileSync(new URL(path, import.meta.url), "utf8")

/** A series name → its metric (histograms add _bucket, _sum, _count). */
const metricOf = (series: string): string => {
  for (const suffix of ["_bucket", "_sum", "_count"]) {
    const base = series.slice(0, -suffix.length)
    if (series.endsWith(suffix) && BatchFlowMetrics.metricNames.includes(base)) return base
  }
  return series
}

/** Metrics of other modules that the docs may name. */
const elsewhere = new Set([
  "batchflow_sql_dedupe_rows_in_total",
  "batchflow_sql_dedupe_rows_out_total",
  "batchflow_durable_entries_total",
  "batchflow_durable_rows_total"
])

describe("metrics documentation and dashboard", () => {
  it("the metrics spec documents every metric in a table row, and names no metric that does not exist", () => {
    const spec = read("../docs/guides/metrics-spec.md")
    for (const name of BatchFlowMetrics.metricNames) expect(spec).toContain(`| \`${name}\` |`)
    for (const [series] of spec.matchAll(/\bbatchflow_[a-z_]+/g)) {
      if (elsewhere.has(series) || series.endsWith("_")) continue
      expect(BatchFlowMetrics.metricNames, `${series} in metrics-spec.md`).toContain(metricOf(series))
    }
  })

  it("every metric the Grafana dashboard queries exists in BatchFlowMetrics", () => {
    const dashboard = read("../examples/grafana-dashboard.json")
    JSON.parse(dashboard)
    const queried = [...dashboard.matchAll(/\bbatchflow_[a-z_]+/g)].map(([series]) => metricOf(series))
    expect(queried.length).toBeGreaterThan(0)
    for (const name of queried)
      expect(BatchFlowMetrics.metricNames, `${name} in the dashboard`).toContain(name)
  })
})
