/**
 * The engine's units of work: a group (one target's rows of one flush) and the parts it is written
 * in, plus the shape in which a failure travels from the retry schedule to settlement. Built and
 * sliced per batch, never per row.
 */
import type * as Fiber from "effect/Fiber"
import type { BatchFailure } from "../../BatchFlowError.js"
import type * as Retry from "../../Retry.js"
import type * as Target from "../../Target.js"
import { Completion } from "./completion.js"

/**
 * What a `write` waits on: completed when its row is committed or reported.
 *
 * @internal
 */
export type Ack = Completion<void, BatchFailure>

/**
 * An error with its classification: what the retry schedule reads and what settlement reports.
 *
 * @internal
 */
export interface Classified {
  readonly error: unknown
  readonly classification: Retry.Classification
}

/**
 * A group's keys (NULL keys left out), with their smallest and largest when they are all numbers or
 * all strings.
 *
 * @internal
 */
export interface GroupKeys {
  readonly keys: ReadonlyArray<unknown>
  readonly range: { readonly min: number | string; readonly max: number | string } | undefined
  /** Whether the keys strictly increase (only for a ranged group). */
  readonly increasing: boolean
  /** The keys as a set, made the first time a comparison needs one (see ordering.ts). */
  set: Set<unknown> | undefined
}

/**
 * Rows written by one executor call (with retries): a whole group, or a part of it being isolated.
 *
 * @internal
 */
export interface Part {
  readonly rows: ReadonlyArray<unknown>
  readonly acks: ReadonlyArray<Ack | undefined> | undefined
  attempts: number
  /** When the first attempt started (clock millis). */
  startedAt: number
  /** An attempt is running and the engine is waiting for its answer. */
  executing: boolean
  /** An attempt may have taken effect (lost connection, abandoned at a deadline): see `Outcome`. */
  maybeWritten: boolean
  /** How the part was settled, once it is; a later answer of an abandoned attempt is then late. */
  settled: Outcome | undefined
}

/**
 * What is known of a settled part's rows: committed, not written (`failed`), or possibly written
 * (`unknown_outcome`).
 *
 * @internal
 */
export type Outcome = "committed" | "failed" | "unknown_outcome"

/**
 * One target's rows of one flush: one executor call, unless a row-level error splits it.
 *
 * @internal
 */
export interface Group extends Part {
  readonly target: Target.Any
  readonly done: Completion
  /** Earlier unfinished groups of the same target that hold some of this group's keys. */
  deps: ReadonlyArray<Group>
  /** Its keys, read when same-key ordering first needs them (see ordering.ts). */
  keys: GroupKeys | undefined
  /** Parts taken for writing and not yet committed or reported. */
  readonly open: Set<Part>
  /** Whether an executor call of this group failed or returned a Partial, or rows were reported unrun. */
  failed: boolean
  /** Completed when the group finishes or hands off to back off (its worker may go on then). */
  readonly released: Completion
  /** Rows it counts in its target's backlog since it handed off (0: it did not), until it finishes. */
  backlogRows: number
  /** The fiber writing it. */
  fiber: Fiber.RuntimeFiber<void> | undefined
}

/** @internal */
export const makeGroup = (
  target: Target.Any,
  rows: ReadonlyArray<unknown>,
  acks: ReadonlyArray<Ack | undefined> | undefined
): Group => {
  const group: Group = {
    target,
    rows,
    acks,
    done: new Completion(),
    deps: [],
    keys: undefined,
    attempts: 0,
    startedAt: 0,
    executing: false,
    maybeWritten: false,
    settled: undefined,
    open: new Set(),
    failed: false,
    released: new Completion(),
    backlogRows: 0,
    fiber: undefined
  }
  // Open from the start: a group interrupted while it waits for an earlier same-key group is
  // still reported.
  group.open.add(group)
  return group
}

/**
 * The rows `[start, end)` of a part, as a new part not attempted yet.
 *
 * @internal
 */
export const slicePart = (part: Part, start: number, end: number): Part => ({
  rows: part.rows.slice(start, end),
  acks: part.acks?.slice(start, end),
  attempts: 0,
  startedAt: 0,
  executing: false,
  // The whole part's earlier attempts may have written these rows too.
  maybeWritten: part.maybeWritten,
  settled: undefined
})

/**
 * The rows at `indices` of a part, as a part with the same attempts and start time.
 *
 * @internal
 */
export const pickPart = (part: Part, indices: ReadonlyArray<number>): Part => ({
  rows: indices.map((i) => part.rows[i]),
  acks: part.acks === undefined ? undefined : indices.map((i) => part.acks![i]),
  attempts: part.attempts,
  startedAt: part.startedAt,
  executing: false,
  maybeWritten: part.maybeWritten,
  settled: undefined
})
