/**
 * The engine: submit → buffer → flush → group → execute → acknowledge.
 *
 * Rows move as plain arrays and Effect is paid per batch, not per row (measurements in
 * docs/development/architecture.md): `submit` is one `Effect.suspend` that validates and pushes onto
 * parallel arrays; the consumer fiber takes up to `flushSize` rows at a time, groups them by target
 * and forks one fiber per group, which waits for earlier groups holding the same keys, takes a
 * semaphore permit and runs the executor with retry and a per-attempt timeout.
 */
import * as Cause from "effect/Cause"
import * as Clock from "effect/Clock"
import * as Deferred from "effect/Deferred"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import type * as FiberId from "effect/FiberId"
import * as Mailbox from "effect/Mailbox"
import * as Option from "effect/Option"
import * as Schedule from "effect/Schedule"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import type * as Tracer from "effect/Tracer"
import { BatchExecutor, isPartial, type Partial } from "../BatchExecutor.js"
import type { Stats } from "../BatchFlow.js"
import type { BatchFlowConfig } from "../BatchFlowConfig.js"
import { AttemptTimeout, BatchFailure, BatchFlowClosed, type InvalidRow } from "../BatchFlowError.js"
import * as Retry from "../Retry.js"
import type * as Target from "../Target.js"
import { RowBuffer } from "./buffer.js"
import { EngineObserver, type FlushTrigger, noop as noopObserver, type Observer } from "./observer.js"
import * as Redact from "./redact.js"
import { timeoutFail } from "./timeout.js"
import { withIndex, withValue } from "./validate.js"

type Ack = Deferred.Deferred<void, BatchFailure>
type Restore = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>

interface Classified {
  readonly error: unknown
  readonly classification: Retry.Classification
}

/** Rows written by one executor call (with retries): a whole group, or a part of it being isolated. */
interface Part {
  readonly rows: ReadonlyArray<unknown>
  readonly acks: ReadonlyArray<Ack | undefined> | undefined
  attempts: number
  /** When the first attempt started (clock millis). */
  startedAt: number
}

/** One target's rows of one flush: one executor call, unless a row-level error splits it. */
interface Group extends Part {
  readonly target: Target.Any
  readonly done: Deferred.Deferred<void>
  /** Earlier unfinished groups of the same target that hold some of this group's keys. */
  deps: ReadonlyArray<Group>
  /** Whether this group's keys are registered in its target's key map. */
  keyed: boolean
  /** Parts taken for writing and not yet committed or reported. */
  readonly open: Set<Part>
  /** Whether an executor call of this group failed or returned a Partial, or rows were reported unrun. */
  failed: boolean
}

/** At most this many submitters' spans are linked from one flush span (OpenTelemetry's default limit). */
const maxSpanLinks = 128

/** With `logRowValues`, a final failure's log line shows at most this many of its rows. */
const loggedRows = 3

const closeTimeoutReason: Retry.Classification = { retryable: false, reason: "close_timeout" }
const defectReason: Retry.Classification = { retryable: false, reason: "defect" }
const engineFailureReason: Retry.Classification = { retryable: false, reason: "engine_failure" }

/** @internal */
export class Engine {
  private readonly buffer: RowBuffer<Ack>

  private closing = false
  private closeStarted = false
  private accepted = 0
  private dispatched = 0
  private committed = 0
  private failed = 0
  private retries = 0
  private droppedFailures = 0

  /** Signals the consumer once the buffer holds `wakeAt` rows, or on flush/close. */
  private wake: Deferred.Deferred<void> | undefined = undefined
  private wakeAt = 1
  /** Signals submitters waiting for room in the buffer. */
  private space: Deferred.Deferred<void> | undefined = undefined
  private flushWaiters: Array<{
    readonly mark: number
    readonly deferred: Deferred.Deferred<ReadonlyArray<Group>>
  }> = []
  private readonly inFlight = new Set<Group>()
  /** Per ordered target: key → the latest unfinished group holding it. */
  private readonly keyOwners = new Map<Target.Any, Map<unknown, Group>>()
  /** Per ordered target: its groups taken and not finished. */
  private readonly active = new Map<Target.Any, Set<Group>>()
  private readonly classify: (error: unknown) => Retry.Classification
  private readonly retrySchedule: Schedule.Schedule<unknown, Classified>
  private workers: ReadonlyArray<Fiber.RuntimeFiber<void>> = []
  /** When the current partial batch started filling: the flush interval is counted from here. */
  private batchStart: number | undefined = undefined
  private readonly ordering: boolean
  /** When a submit last yielded to the event loop (performance.now()). */
  private lastTurn = performance.now()
  private readonly intervalMillis: number
  /** Whether row values may be shown, and which columns never are. */
  private readonly redaction: Redact.Redaction

  constructor(
    private readonly config: BatchFlowConfig,
    private readonly executor: BatchExecutor,
    userRules: ReadonlyArray<Retry.Rule>,
    private readonly semaphore: Effect.Semaphore,
    private readonly failureBox: Mailbox.Mailbox<BatchFailure>,
    private readonly fiberId: FiberId.FiberId,
    private readonly done: Deferred.Deferred<void>,
    private readonly observer: Observer,
    private readonly clock: Clock.Clock,
    /** Executor calls taking at least this long (retries included) are logged as a warning. */
    private readonly slowBatchMillis: number
  ) {
    this.classify = Retry.classifyWith([...userRules, ...executor.rules, Retry.engineRule])
    this.retrySchedule = Schedule.mapInput(Retry.schedule(config.retry), (c: Classified) => c.classification)
    this.buffer = new RowBuffer(config.bufferSize)
    this.ordering = config.concurrency > 1
    this.intervalMillis = Duration.toMillis(config.flushInterval)
    this.redaction = Redact.make(config)
  }

  private get size(): number {
    return this.buffer.size
  }

  // ---------------------------------------------------------------- submit → buffer

  submit<A>(target: Target.Target<A>, row: A): Effect.Effect<void, InvalidRow | BatchFlowClosed> {
    return Effect.withFiberRuntime((fiber): Effect.Effect<void, InvalidRow | BatchFlowClosed> => {
      const invalid = target.validate(row)
      return invalid === undefined
        ? this.enqueue(target, row, undefined, fiber.currentSpan)
        : this.rejectInvalid(invalid)
    })
  }

  write<A>(
    target: Target.Target<A>,
    row: A
  ): Effect.Effect<void, InvalidRow | BatchFlowClosed | BatchFailure> {
    return Effect.withFiberRuntime(
      (fiber): Effect.Effect<void, InvalidRow | BatchFlowClosed | BatchFailure> => {
        const invalid = target.validate(row)
        if (invalid !== undefined) return this.rejectInvalid(invalid)
        const ack = Deferred.unsafeMake<void, BatchFailure>(this.fiberId)
        return Effect.zipRight(this.enqueue(target, row, ack, fiber.currentSpan), Deferred.await(ack))
      }
    )
  }

  submitAll<A>(
    target: Target.Target<A>,
    input: Iterable<A>
  ): Effect.Effect<void, InvalidRow | BatchFlowClosed> {
    return Effect.withFiberRuntime((fiber): Effect.Effect<void, InvalidRow | BatchFlowClosed> => {
      const rows = Array.isArray(input) ? (input as ReadonlyArray<A>) : Array.from(input)
      for (let i = 0; i < rows.length; i++) {
        const invalid = target.validate(rows[i])
        if (invalid !== undefined) return this.rejectInvalid(withIndex(invalid, i))
      }
      return rows.length === 0 ? Effect.void : this.enqueueAll(target, rows, 0, fiber.currentSpan)
    })
  }

  private rejectInvalid(invalid: InvalidRow): Effect.Effect<never, InvalidRow> {
    this.observer.submitRejected(invalid.target, "invalid_row")
    return Effect.fail(this.redaction.logRowValues ? withValue(invalid, this.redaction) : invalid)
  }

  private rejectClosed(target: Target.Any): Effect.Effect<never, BatchFlowClosed> {
    this.observer.submitRejected(target.name, "closed")
    return Effect.fail(new BatchFlowClosed({ target: target.name }))
  }

  /** `waitingSince`: when this submit first found the buffer full (only such submits are timed). */
  private enqueue(
    target: Target.Any,
    row: unknown,
    ack: Ack | undefined,
    span: Tracer.AnySpan | undefined,
    waitingSince?: number
  ): Effect.Effect<void, BatchFlowClosed> {
    if (this.closing) return this.rejectClosed(target)
    const buffer = this.buffer
    if (buffer.size >= buffer.capacity) {
      const since = waitingSince ?? this.clock.unsafeCurrentTimeMillis()
      return Effect.zipRight(
        this.awaitSpace(),
        Effect.suspend(() => this.enqueue(target, row, ack, span, since))
      )
    }
    if (waitingSince !== undefined) {
      this.observer.submitWaited(target.name, this.clock.unsafeCurrentTimeMillis() - waitingSince)
    }
    buffer.push(target, row, ack, span)
    this.accepted++
    const size = buffer.size
    if (this.wake !== undefined && size >= this.wakeAt) this.signalWake()
    if (size % this.config.flushSize !== 0) return Effect.void
    // Once per full batch, let the workers run: rows that wait in the buffer live longer, and rows
    // that survive young-generation collections are what makes GC expensive. At most every 50 ms,
    // yield to the event loop itself: with a synchronous sink nothing else would let timers (the
    // flush interval, timeouts, signal handlers) run while producers keep submitting.
    const now = performance.now()
    if (now - this.lastTurn < 50) return Effect.yieldNow()
    this.lastTurn = now
    return eventLoopTurn
  }

  /**
   * Rows that fit in the buffer are accepted together; a call with more rows than the buffer holds is
   * accepted in pieces as room frees up.
   */
  private enqueueAll(
    target: Target.Any,
    rows: ReadonlyArray<unknown>,
    from: number,
    span: Tracer.AnySpan | undefined
  ): Effect.Effect<void, BatchFlowClosed> {
    if (this.closing) return this.rejectClosed(target)
    const free = this.buffer.free
    const remaining = rows.length - from
    const piece = remaining <= this.config.bufferSize ? remaining : Math.max(free, 0)
    if (piece === 0 || piece > free) {
      return Effect.zipRight(
        this.awaitSpace(),
        Effect.suspend(() => this.enqueueAll(target, rows, from, span))
      )
    }
    this.buffer.pushAll(target, rows, from, from + piece, span)
    this.accepted += piece
    if (this.wake !== undefined && this.size >= this.wakeAt) this.signalWake()
    return from + piece === rows.length ? Effect.void : this.enqueueAll(target, rows, from + piece, span)
  }

  private awaitSpace(): Effect.Effect<void> {
    return Effect.suspend(() => {
      if (this.space === undefined) {
        this.space = Deferred.unsafeMake<void>(this.fiberId)
        this.signalWake()
      }
      return Deferred.await(this.space)
    })
  }

  private signalSpace(): void {
    if (this.space !== undefined) {
      Deferred.unsafeDone(this.space, Exit.void)
      this.space = undefined
    }
  }

  private signalWake(): void {
    if (this.wake !== undefined) {
      Deferred.unsafeDone(this.wake, Exit.void)
      this.wake = undefined
    }
  }

  /** Several workers may wait at once: they share one signal, fired at the lowest size any asked for. */
  private armWake(at: number): Deferred.Deferred<void> {
    if (this.wake === undefined) {
      this.wake = Deferred.unsafeMake<void>(this.fiberId)
      this.wakeAt = at
    } else {
      this.wakeAt = Math.min(this.wakeAt, at)
    }
    return this.wake
  }

  // ---------------------------------------------------------------- flush triggers (the workers)

  private get flushRequested(): boolean {
    return this.flushWaiters.length > 0
  }

  /**
   * One of `concurrency` workers: waits for a trigger (a full batch, the interval, a flush request or
   * close), takes up to `flushSize` rows and writes them, then loops; ends once closed and drained.
   * Taking batches from the workers themselves (rather than a dispatcher forking a fiber per batch)
   * keeps rows in the buffer for as short a time as possible: see docs/development/architecture.md.
   */
  readonly worker: Effect.Effect<void> = Effect.gen(this, function* () {
    while (true) {
      const now = yield* Clock.currentTimeMillis
      const next = this.nextStep(now)
      if (next === "done") return
      if (typeof next !== "string") {
        yield* next
        continue
      }
      yield* Effect.uninterruptibleMask((restore) =>
        Effect.suspend(() => this.flushBatch(Math.min(this.size, this.config.flushSize), next, now, restore))
      )
      if (this.size === 0) this.batchStart = undefined
      else this.batchStart = yield* Clock.currentTimeMillis
    }
  })

  /**
   * Decides, synchronously, what a worker does next: take a batch now, stop (closed and drained), or
   * wait. A wait arms the wake-up signal before returning, so a submit, flush or close that happens
   * while the worker is getting ready to wait is never missed.
   */
  private nextStep(now: number): FlushTrigger | "done" | Effect.Effect<void> {
    const size = this.size
    if (size === 0) {
      this.batchStart = undefined
      return this.closing ? "done" : Deferred.await(this.armWake(1))
    }
    if (size >= this.config.flushSize) return "size"
    if (this.closing) return "close"
    if (this.flushRequested) return "manual"
    // A submitter waiting for room also makes the partial batch go now rather than after the interval.
    if (this.space !== undefined) return "backpressure"
    this.batchStart ??= now
    const remaining = this.batchStart + this.intervalMillis - now
    if (remaining <= 0) return "interval"
    // Whole milliseconds: clock readings can be fractional (TestClock instants set by jittered
    // sleeps), and a sleep shorter than the clock's precision at that instant would end at once,
    // leaving the same sub-ulp `remaining` on every turn: a busy loop.
    return Effect.raceFirst(
      Effect.sleep(Duration.millis(Math.ceil(remaining))),
      Deferred.await(this.armWake(this.config.flushSize))
    )
  }

  // ---------------------------------------------------------------- flush → group

  /** Takes `n` rows off the buffer and groups them by target (arrival order kept inside a group). */
  private take(
    n: number,
    trigger: FlushTrigger,
    now: number,
    links: Set<Tracer.AnySpan>
  ): ReadonlyArray<Group> {
    if (n === 0) return []
    const waitedMillis = this.batchStart === undefined ? 0 : now - this.batchStart
    const assembleStart = this.clock.unsafeCurrentTimeNanos()
    const grouped = this.buffer.take(n, links, maxSpanLinks)
    this.dispatched += n
    this.signalSpace()

    const groups = grouped.map((g) => this.makeGroup(g.target, g.rows, g.acks))
    this.resolveFlushWaiters()
    const assembleMillis = Number(this.clock.unsafeCurrentTimeNanos() - assembleStart) / 1e6
    this.observer.batchTaken({
      trigger,
      rows: n,
      groups: groups.length,
      buffered: this.size,
      waitedMillis,
      assembleMillis
    })
    this.observer.depth(this.size, this.inFlight.size)
    return groups
  }

  /**
   * One flush: take a batch, write it, report it. Traced as a `BatchFlow.flush` span linked to the
   * spans the submitting fibers were in (`submit`, `submitAll` and `write` alike; at most
   * `maxSpanLinks` distinct spans per flush).
   */
  private flushBatch(n: number, trigger: FlushTrigger, now: number, restore: Restore): Effect.Effect<void> {
    const links = new Set<Tracer.AnySpan>()
    const groups = this.take(n, trigger, now, links)
    const failed = () => groups.some((group) => group.failed)
    return Effect.zipRight(
      this.runBatch(groups, restore),
      Effect.suspend(() => Effect.annotateCurrentSpan("batchflow.outcome", failed() ? "failure" : "success"))
    ).pipe(
      Effect.withSpan("BatchFlow.flush", {
        attributes: { "batchflow.trigger": trigger, "batchflow.rows": n, "batchflow.groups": groups.length },
        links: Array.from(links, (span): Tracer.SpanLink => ({ _tag: "SpanLink", span, attributes: {} })),
        captureStackTrace: false
      }),
      Effect.ensuring(
        Effect.sync(() =>
          this.observer.batchFinished({
            trigger,
            rows: n,
            groups: groups.length,
            durationMillis: this.clock.unsafeCurrentTimeMillis() - now,
            failed: failed()
          })
        )
      )
    )
  }

  /**
   * Writes one flush's groups: one executor call per group, the groups of different targets at once.
   * Called in an uninterruptible region with `restore`, so that once rows are taken off the buffer,
   * each group is settled (committed or reported) even if the worker is interrupted.
   */
  private runBatch(groups: ReadonlyArray<Group>, restore: Restore): Effect.Effect<void> {
    if (groups.length === 0) return Effect.void
    if (groups.length === 1) return this.runGroup(groups[0]!, restore)
    // Several targets: one fiber per group. The wait is interruptible (a close timeout interrupts the
    // worker here) and interrupting it interrupts the groups, whose own handlers report their rows.
    return Effect.flatMap(
      Effect.forEach(groups, (group) => Effect.fork(this.runGroup(group, restore))),
      (fibers) => restore(Fiber.joinAll(fibers)).pipe(Effect.onInterrupt(() => Fiber.interruptAll(fibers)))
    )
  }

  private makeGroup(
    target: Target.Any,
    rows: ReadonlyArray<unknown>,
    acks: ReadonlyArray<Ack | undefined> | undefined
  ): Group {
    const group: Group = {
      target,
      rows,
      acks,
      done: Deferred.unsafeMake<void>(this.fiberId),
      deps: [],
      keyed: false,
      attempts: 0,
      startedAt: 0,
      open: new Set(),
      failed: false
    }
    // Open from the start: a group interrupted while it waits for an earlier same-key group is
    // still reported.
    group.open.add(group)
    if (this.ordering && target.ordered) this.order(group)
    this.inFlight.add(group)
    return group
  }

  /** Same-key ordering: a group waits for the earlier unfinished groups that hold any of its keys. */
  /**
   * Keys are registered lazily: a group taken while no other group of its target is running needs no
   * bookkeeping (its keys are registered only if a second group arrives while it still runs). With a
   * fast executor that is most groups.
   */
  private order(group: Group): void {
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

  private resolveFlushWaiters(): void {
    if (this.flushWaiters.length === 0) return
    const snapshot = Array.from(this.inFlight)
    this.flushWaiters = this.flushWaiters.filter((waiter) => {
      if (waiter.mark > this.dispatched) return true
      Deferred.unsafeDone(waiter.deferred, Exit.succeed(snapshot))
      return false
    })
  }

  // ---------------------------------------------------------------- execute → acknowledge

  private runGroup(group: Group, restore: Restore): Effect.Effect<void> {
    const body = Effect.gen(this, function* () {
      for (const dep of group.deps) yield* Deferred.await(dep.done)
      yield* this.runPart(group, group)
    })
    return restore(body).pipe(
      Effect.onExit((exit) =>
        Effect.suspend(() => {
          const classified: Classified | undefined = Exit.isSuccess(exit)
            ? undefined
            : Exit.isInterrupted(exit)
              ? { error: this.closeTimeoutMessage("batch"), classification: closeTimeoutReason }
              : { error: Cause.squash(exit.cause), classification: engineFailureReason }
          const unsettled = classified === undefined ? [] : Array.from(group.open)
          if (unsettled.length > 0) group.failed = true
          group.open.clear()
          return Effect.zipRight(
            Effect.forEach(unsettled, (part) => this.settleFailure(group.target, part, classified!), {
              discard: true
            }),
            Effect.sync(() => this.finish(group))
          )
        })
      )
    )
  }

  /**
   * Writes a part with retry. A final error that the classifier marks `rowLevel` (one bad row can
   * cause it: not-null, check, foreign key, value too long…) splits the part in halves, written one
   * after the other (so same-key order holds), until the bad rows are alone: the good rows commit and
   * only the bad ones are reported.
   */
  private runPart(group: Group, part: Part): Effect.Effect<void> {
    return Effect.suspend(() => {
      group.open.add(part)
      return Effect.either(this.semaphore.withPermits(1)(this.attempt(group.target, part)))
    }).pipe(
      Effect.flatMap((outcome) => {
        group.open.delete(part)
        if (outcome._tag === "Right") {
          if (isPartial(outcome.right) && outcome.right.failed.length > 0) {
            group.failed = true
            return this.settlePartial(group.target, part, outcome.right)
          }
          this.settleSuccess(group.target, part)
          return Effect.void
        }
        if (outcome.left.classification.rowLevel === true && part.rows.length > 1) {
          this.retries += part.attempts - 1
          const mid = part.rows.length >> 1
          const first = slicePart(part, 0, mid)
          const second = slicePart(part, mid, part.rows.length)
          // Both halves are open before either runs, so an interruption reports the second too.
          group.open.add(first)
          group.open.add(second)
          return Effect.zipRight(this.runPart(group, first), this.runPart(group, second))
        }
        group.failed = true
        return this.settleFailure(group.target, part, outcome.left)
      })
    )
  }

  /** All attempts of one part: retry per the schedule, each attempt under the timeout. */
  private attempt(target: Target.Any, part: Part): Effect.Effect<void | Partial, Classified> {
    const timeoutMillis = Duration.toMillis(this.config.timeout)
    let once: Effect.Effect<void | Partial, unknown> = Effect.suspend(() => {
      if (part.attempts++ === 0) part.startedAt = this.clock.unsafeCurrentTimeMillis()
      return this.executor.execute(target, part.rows)
    })
    if (Duration.isFinite(this.config.timeout)) {
      once = timeoutFail(
        once,
        this.config.timeout,
        () => new AttemptTimeout({ target: target.name, timeoutMillis })
      )
    }
    const attemptOnce = once
    // One span per attempt, a child of the flush span.
    const traced = Effect.suspend(() =>
      Effect.withSpan(
        Effect.onExit(attemptOnce, (exit) => Effect.annotateCurrentSpan(this.attemptOutcome(exit))),
        "BatchFlow.execute",
        {
          attributes: {
            "batchflow.target": target.name,
            "batchflow.rows": part.rows.length,
            "batchflow.attempt": part.attempts + 1
          },
          captureStackTrace: false
        }
      )
    )
    const classified = Effect.catchAllCause(traced, (cause) => {
      // Errors raised inside a span come wrapped (Effect attaches the span): report the original.
      const failure = Option.map(Cause.failureOption(cause), Cause.originalError)
      if (Option.isSome(failure)) {
        const classification = this.classify(failure.value)
        this.observer.attemptFailed(
          target.name,
          classification.reason,
          !classification.retryable || part.attempts >= this.config.retry.maxAttempts
        )
        return Effect.fail<Classified>({ error: failure.value, classification })
      }
      const defect = Option.map(Cause.dieOption(cause), Cause.originalError)
      if (Option.isSome(defect)) {
        this.observer.attemptFailed(target.name, defectReason.reason, true)
        return Effect.fail<Classified>({ error: defect.value, classification: defectReason })
      }
      return Effect.interrupt
    })
    return Effect.onExit(Effect.retry(classified, this.retrySchedule), (exit) =>
      this.executed(target, part, exit)
    )
  }

  private attemptOutcome(exit: Exit.Exit<unknown, unknown>): Record<string, string> {
    if (Exit.isSuccess(exit)) {
      const partial = isPartial(exit.value) && exit.value.failed.length > 0
      return { "batchflow.outcome": partial ? "partial" : "success" }
    }
    const failure = Cause.failureOption(exit.cause)
    if (Option.isSome(failure)) {
      const reason = this.classify(Cause.originalError(failure.value)).reason
      return { "batchflow.outcome": "failure", "batchflow.reason": reason }
    }
    return Cause.isInterruptedOnly(exit.cause)
      ? { "batchflow.outcome": "interrupted" }
      : { "batchflow.outcome": "failure", "batchflow.reason": defectReason.reason }
  }

  /** After the last attempt of an executor call: per-call metrics, and a warning when it was slow. */
  private executed(
    target: Target.Any,
    part: Part,
    exit: Exit.Exit<unknown, Classified>
  ): Effect.Effect<void> {
    if (part.attempts === 0) return Effect.void
    const durationMillis = this.clock.unsafeCurrentTimeMillis() - part.startedAt
    const status = Exit.isFailure(exit)
      ? "fail"
      : isPartial(exit.value) && exit.value.failed.length > 0
        ? "partial"
        : "success"
    const rows = part.rows.length
    const attempts = part.attempts
    this.observer.executed({ target: target.name, rows, attempts, durationMillis, status })
    // Failures are logged as errors when reported; only slow writes that went through warn here.
    if (status === "fail" || durationMillis < this.slowBatchMillis) return Effect.void
    return Effect.logWarning(
      `Writing ${rows} row(s) for target "${target.name}" took ${durationMillis} ms over ${attempts} attempt(s), more than slowBatchThreshold (${this.slowBatchMillis} ms).`
    ).pipe(Effect.annotateLogs({ target: target.name, rows, attempts, durationMillis, status }))
  }

  private settleSuccess(target: Target.Any, part: Part): void {
    this.committed += part.rows.length
    this.retries += part.attempts - 1
    this.observer.groupFinished({
      target: target.name,
      rows: part.rows.length,
      attempts: part.attempts,
      durationMillis: this.clock.unsafeCurrentTimeMillis() - part.startedAt,
      outcome: "success",
      reason: ""
    })
    if (part.acks !== undefined) {
      for (const ack of part.acks) if (ack !== undefined) Deferred.unsafeDone(ack, Exit.void)
    }
  }

  /** Some rows were written, some not: commit the others, report the failed ones by reason. */
  private settlePartial(target: Target.Any, part: Part, result: Partial): Effect.Effect<void> {
    const failedAt = new Map<number, unknown>()
    for (const { index, error } of result.failed) {
      if (index >= 0 && index < part.rows.length) failedAt.set(index, error)
    }
    const written: Array<number> = []
    const byReason = new Map<string, { indices: Array<number>; first: Classified }>()
    for (let i = 0; i < part.rows.length; i++) {
      if (!failedAt.has(i)) {
        written.push(i)
        continue
      }
      const error = failedAt.get(i)
      const classification = this.classify(error)
      const entry = byReason.get(classification.reason)
      if (entry === undefined)
        byReason.set(classification.reason, { indices: [i], first: { error, classification } })
      else entry.indices.push(i)
    }
    this.settleSuccess(target, pickPart(part, written))
    return Effect.forEach(
      byReason.values(),
      ({ indices, first }) => {
        // The call partly failed: once per reason, like a failed attempt that will not be retried.
        this.observer.attemptFailed(target.name, first.classification.reason, true)
        return this.settleFailure(target, pickPart(part, indices), first)
      },
      { discard: true }
    )
  }

  private settleFailure(target: Target.Any, part: Part, classified: Classified): Effect.Effect<void> {
    this.retries += Math.max(part.attempts - 1, 0)
    this.observer.groupFinished({
      target: target.name,
      rows: part.rows.length,
      attempts: part.attempts,
      durationMillis: part.attempts === 0 ? 0 : this.clock.unsafeCurrentTimeMillis() - part.startedAt,
      outcome: "failure",
      reason: classified.classification.reason
    })
    return this.reportFailure(target, part.rows, part.acks, part.attempts, classified)
  }

  private reportFailure(
    target: Target.Any,
    rows: ReadonlyArray<unknown>,
    acks: ReadonlyArray<Ack | undefined> | undefined,
    attempts: number,
    classified: Classified
  ): Effect.Effect<void> {
    const failure = new BatchFailure({
      target: target.name,
      rows,
      attempts,
      reason: classified.classification.reason,
      retryable: classified.classification.retryable,
      cause: classified.error,
      detail: Redact.failureDetail(this.redaction, classified.error, rows)
    })
    this.failed += rows.length
    if (acks !== undefined) {
      const exit = Exit.fail(failure)
      for (const ack of acks) if (ack !== undefined) Deferred.unsafeDone(ack, exit)
    }
    if (!this.failureBox.unsafeOffer(failure)) {
      this.droppedFailures++
      this.observer.failureDropped()
    }
    // Rows are shown only when asked for, a few of them, sensitive columns redacted.
    const message = this.redaction.logRowValues
      ? `${failure.message}\n${Redact.formatRows(rows, this.redaction.isSensitive, loggedRows)}`
      : failure.message
    return Effect.logError(message).pipe(
      Effect.annotateLogs({ target: target.name, reason: failure.reason, rows: rows.length, attempts })
    )
  }

  private finish(group: Group): void {
    if (group.keyed) this.releaseKeys(group)
    this.active.get(group.target)?.delete(group)
    this.inFlight.delete(group)
    Deferred.unsafeDone(group.done, Exit.void)
    this.observer.depth(this.size, this.inFlight.size)
  }

  // ---------------------------------------------------------------- flush, close, introspection

  readonly flush: Effect.Effect<void> = Effect.suspend(() => {
    const mark = this.accepted
    if (mark <= this.dispatched) return awaitGroups(Array.from(this.inFlight))
    const deferred = Deferred.unsafeMake<ReadonlyArray<Group>>(this.fiberId)
    this.flushWaiters.push({ mark, deferred })
    this.signalWake()
    return Effect.flatMap(Deferred.await(deferred), awaitGroups)
  })

  start(workers: ReadonlyArray<Fiber.RuntimeFiber<void>>): void {
    this.workers = workers
  }

  readonly close: Effect.Effect<void> = Effect.suspend(() => {
    if (this.closeStarted) return Deferred.await(this.done)
    this.closeStarted = true
    this.closing = true
    this.signalWake()
    this.signalSpace()
    return Effect.zipRight(Effect.forkDaemon(Effect.interruptible(this.shutdown)), Deferred.await(this.done))
  })

  /** Waits for the workers to drain everything; past `closeTimeout`, stops them and reports what is left. */
  private readonly shutdown: Effect.Effect<void> = Effect.gen(this, function* () {
    const drained = yield* Fiber.await(Fiber.all(this.workers)).pipe(
      Effect.timeoutOption(this.config.closeTimeout)
    )
    if (Option.isNone(drained) || Exit.isFailure(drained.value)) {
      yield* Fiber.interruptAll(this.workers)
      yield* Option.isNone(drained)
        ? this.reportBuffered(closeTimeoutReason, this.closeTimeoutMessage("rows"))
        : this.reportBuffered(
            engineFailureReason,
            Cause.squash((drained.value as Exit.Failure<void, never>).cause)
          )
    }
    for (const waiter of this.flushWaiters) Deferred.unsafeDone(waiter.deferred, Exit.succeed([]))
    this.flushWaiters = []
    yield* this.failureBox.end
    yield* Deferred.succeed(this.done, undefined)
  })

  /** Reports the rows still in the buffer (grouped by target) as failures. */
  private reportBuffered(classification: Retry.Classification, error: unknown): Effect.Effect<void> {
    const grouped = this.buffer.take(this.buffer.size)
    this.observer.depth(0, this.inFlight.size)
    return Effect.forEach(
      grouped,
      (g) => {
        this.observer.groupFinished({
          target: g.target.name,
          rows: g.rows.length,
          attempts: 0,
          durationMillis: 0,
          outcome: "failure",
          reason: classification.reason
        })
        return this.reportFailure(g.target, g.rows, g.acks, 0, { error, classification })
      },
      { discard: true }
    )
  }

  private closeTimeoutMessage(what: "batch" | "rows"): string {
    const subject = what === "batch" ? "this batch was" : "these rows were"
    return `the flow closed before ${subject} written (closeTimeout ${Duration.format(this.config.closeTimeout)})`
  }

  get failures(): Stream.Stream<BatchFailure> {
    return Mailbox.toStream(this.failureBox)
  }

  readonly awaitDone: Effect.Effect<void> = Effect.suspend(() => Deferred.await(this.done))

  readonly isDone: Effect.Effect<boolean> = Effect.suspend(() => Deferred.isDone(this.done))

  readonly stats: Effect.Effect<Stats> = Effect.sync(() => ({
    buffered: this.size,
    inFlight: this.inFlight.size,
    accepted: this.accepted,
    committed: this.committed,
    failed: this.failed,
    retries: this.retries,
    droppedFailures: this.droppedFailures
  }))
}

const eventLoopTurn: Effect.Effect<void> = Effect.async<void>((resume) => {
  setImmediate(() => resume(Effect.void))
})

const slicePart = (part: Part, start: number, end: number): Part => ({
  rows: part.rows.slice(start, end),
  acks: part.acks?.slice(start, end),
  attempts: 0,
  startedAt: 0
})

/** The rows at `indices` of a part, as a part with the same attempts and start time. */
const pickPart = (part: Part, indices: ReadonlyArray<number>): Part => ({
  rows: indices.map((i) => part.rows[i]),
  acks: part.acks === undefined ? undefined : indices.map((i) => part.acks![i]),
  attempts: part.attempts,
  startedAt: part.startedAt
})

const awaitGroups = (groups: ReadonlyArray<Group>): Effect.Effect<void> =>
  Effect.forEach(groups, (g) => Deferred.await(g.done), { discard: true })

/** @internal */
export const make = (
  config: BatchFlowConfig,
  userRules: ReadonlyArray<Retry.Rule>
): Effect.Effect<Engine, never, BatchExecutor | Scope.Scope> =>
  Effect.gen(function* () {
    const executor = yield* BatchExecutor
    const semaphore = yield* Effect.makeSemaphore(config.concurrency)
    const failureBox = yield* Mailbox.make<BatchFailure>({
      capacity: config.failureBufferSize,
      strategy: "dropping"
    })
    const fiberId = yield* Effect.fiberId
    const done = yield* Deferred.make<void>()
    const observer = Option.getOrElse(yield* Effect.serviceOption(EngineObserver), () => noopObserver)
    const clock = yield* Effect.clock
    const slowBatchThreshold = config.slowBatchThreshold
    const engine = new Engine(
      config,
      executor,
      userRules,
      semaphore,
      failureBox,
      fiberId,
      done,
      observer,
      clock,
      Duration.toMillis(slowBatchThreshold)
    )
    observer.started({
      concurrency: config.concurrency,
      flushSize: config.flushSize,
      bufferSize: config.bufferSize
    })
    const workers = yield* Effect.forEach(
      Array.from({ length: config.concurrency }),
      () => Effect.forkScoped(Effect.interruptible(engine.worker)),
      { concurrency: 1 }
    )
    engine.start(workers)
    // Registered after the forks, so it runs before the workers are interrupted: closing the scope
    // drains the buffer and waits for every in-flight write.
    yield* Effect.addFinalizer(() => engine.close)
    return engine
  })
