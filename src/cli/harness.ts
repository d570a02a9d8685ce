/**
 * What the bench needs from a backend: a flow layer for each run, a way to submit row `id`, reset
 * and verify the destination outside the clock, the raw-driver baselines, and the test hook that
 * damages the result behind the bench's back. Each backend module (`sqliteBackend`, `pgBackend`,
 * …) builds one; they are loaded lazily so that only the chosen backend's driver is imported.
 *
 * @since 0.1.0
 */
import * as Data from "effect/Data"
import type * as Effect from "effect/Effect"
import type * as Layer from "effect/Layer"
import type * as Scope from "effect/Scope"
import type * as BatchFlow from "../BatchFlow.js"
import type { BatchFailure, BatchFlowClosed, BufferFull, InvalidRow } from "../BatchFlowError.js"
import type { Baseline } from "./raw.js"
import type { BenchSpec } from "./workload.js"

/**
 * The result of the integrity check of one run.
 *
 * @since 0.1.0
 * @category models
 */
export interface Integrity {
  readonly ok: boolean
  /** Rows (or keys) expected: ids 1..N. */
  readonly expected: number
  /** Rows (or keys) found. */
  readonly found: number
  /** Rows whose content differs from what was written (full check where the backend allows). */
  readonly wrongContent: number
  /** Rows compared field by field. */
  readonly spotChecked: number
  /** What is wrong, one line each (empty when `ok`). */
  readonly problems: ReadonlyArray<string>
}

/**
 * Damage done to the destination after a BatchFlow run and before its check, so that a test can
 * prove the check fails: `delete` removes rows, `corrupt` changes their content. Set with the
 * `BATCHFLOW_BENCH_TAMPER` environment variable (`delete:3`, `corrupt:2`).
 *
 * @since 0.1.0
 * @category models
 */
export interface Tamper {
  readonly kind: "delete" | "corrupt"
  readonly rows: number
}

/**
 * Per-row operations on a flow for one backend's target.
 *
 * @since 0.1.0
 * @category models
 */
export interface Ops {
  readonly submit: (id: number) => Effect.Effect<void, InvalidRow | BatchFlowClosed | BufferFull>
  readonly submitAll: (
    first: number,
    last: number
  ) => Effect.Effect<void, InvalidRow | BatchFlowClosed | BufferFull>
  readonly write: (
    id: number
  ) => Effect.Effect<void, InvalidRow | BatchFlowClosed | BufferFull | BatchFailure>
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Harness {
  /** One line: the backend and where it writes. */
  readonly description: string
  /** One line: what BatchFlow sends per batch. */
  readonly flowDescription: string
  /** Settings the reader should know (e.g. SQLite's journal mode), one line each. */
  readonly notes: ReadonlyArray<string>
  /** A fresh flow; built at the start of each run and closed at its end. */
  readonly flowLayer: Layer.Layer<BatchFlow.BatchFlow, unknown>
  readonly ops: (flow: BatchFlow.BatchFlow) => Ops
  /** Drops and recreates the table (or deletes the keys); outside the clock. */
  readonly reset: Effect.Effect<void, unknown>
  /** Checks that rows 1..`rows` are all there with their content. */
  readonly verify: (rows: number) => Effect.Effect<Integrity, unknown>
  readonly tamper: (tamper: Tamper, rows: number) => Effect.Effect<void, unknown>
  /** The raw-driver baselines; the first is the one ratios are computed against. */
  readonly baselines: ReadonlyArray<Baseline>
  /** Removes the table / keys at the end (skipped with `--keep`). */
  readonly cleanup: Effect.Effect<void, unknown>
}

/**
 * A backend could not be set up (connection refused, missing driver, no privilege…).
 *
 * @since 0.1.0
 * @category errors
 */
export class BackendError extends Data.TaggedError("BackendError")<{
  readonly message: string
  readonly cause?: unknown
}> {}

/**
 * A backend module: builds its harness in a scope (connections are closed with it).
 *
 * @since 0.1.0
 * @category models
 */
export type MakeHarness = (spec: BenchSpec) => Effect.Effect<Harness, BackendError, Scope.Scope>

/**
 * The ids the test hook damages: `count` ids spread over 1..rows.
 *
 * @since 0.1.0
 * @category utils
 */
export const tamperedIds = (count: number, rows: number): Array<number> => {
  const n = Math.min(count, rows)
  const ids = new Set<number>()
  for (let i = 0; i < n; i++) ids.add(Math.max(1, Math.floor(((i + 0.5) * rows) / n)))
  return [...ids]
}

/**
 * The ids spot-checked field by field: the first two, the middle, the last two, and 15 more spread
 * over the range with a per-run offset.
 *
 * @since 0.1.0
 * @category utils
 */
export const spotIds = (rows: number): Array<number> => {
  const ids = new Set<number>([1, 2, Math.floor(rows / 2), rows - 1, rows])
  const offset = Math.floor(Math.random() * rows)
  for (let i = 0; i < 15; i++) ids.add(((offset + Math.floor((i * rows) / 15)) % rows) + 1)
  return [...ids].filter((id) => id >= 1 && id <= rows).sort((a, b) => a - b)
}

/**
 * Builds the integrity result from the counts and the problems found.
 *
 * @since 0.1.0
 * @category constructors
 */
export const integrityOf = (fields: {
  readonly expected: number
  readonly found: number
  readonly wrongContent: number
  readonly spotChecked: number
  readonly problems: ReadonlyArray<string>
}): Integrity => {
  const problems = [...fields.problems]
  if (fields.found < fields.expected) {
    problems.unshift(
      `${fields.expected - fields.found} rows missing (found ${fields.found} of ${fields.expected})`
    )
  } else if (fields.found > fields.expected) {
    problems.unshift(
      `${fields.found - fields.expected} unexpected rows (found ${fields.found}, expected ${fields.expected})`
    )
  }
  if (fields.wrongContent > 0) problems.push(`${fields.wrongContent} rows with wrong content`)
  return { ...fields, ok: problems.length === 0, problems }
}

/**
 * The message of an unknown error, following `cause` chains one level (driver errors wrapped by
 * `SqlError`).
 *
 * @since 0.1.0
 * @category utils
 */
export const messageOf = (cause: unknown): string => {
  if (typeof cause === "object" && cause !== null) {
    const inner = (cause as { cause?: unknown }).cause
    const own = (cause as { message?: unknown }).message
    if (inner instanceof Error && inner.message !== "") return inner.message
    if (typeof own === "string" && own !== "") return own
  }
  return String(cause)
}
