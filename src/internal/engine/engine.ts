/**
 * The engine: submit → buffer → flush → group → execute → acknowledge.
 *
 * Rows move as plain arrays and Effect is paid per batch, not per row (measurements in
 * docs/development/architecture.md): `submit` is one `Effect.withFiberRuntime` that validates the
 * row, copies it (`Target.copy`, rows/snapshot.ts) and writes the copy into a slot of the ring buffer; each of the
 * `concurrency` workers takes up to `flushSize` rows at a time, groups them by target (forking only
 * when a batch holds several targets), waits for earlier groups holding the same keys, and runs the
 * executor with retry and a per-attempt timeout.
 *
 * This class is the data path, each step in one place; what stands on its own lives beside it: the
 * ring of buffered rows (buffer.ts), pending `flush` calls (flushRequests.ts), groups and parts
 * (group.ts), same-key ordering (ordering.ts), the attempts of one executor call (attempt.ts),
 * settlement, which commits or reports every row (settle.ts), and the close timeout (close.ts).
 */
import * as Cause from "effect/Cause"
import type * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Mailbox from "effect/Mailbox"
import * as Option from "effect/Option"
import * as Runtime from "effect/Runtime"
import type * as Scope from "effect/Scope"
import type * as Stream from "effect/Stream"
import type * as Tracer from "effect/Tracer"
import { isPartial } from "../../BatchExecutor.js"
import type { BatchFlowConfig } from "../../BatchFlowConfig.js"
import { type BatchFailure, BatchFlowClosed, BufferFull, type InvalidRow } from "../../BatchFlowError.js"
import type * as Retry from "../../Retry.js"
import type * as Target from "../../Target.js"
import * as Redact from "../rows/redact.js"
import { withIndex, withValue } from "../rows/validate.js"
import { Attempts } from "./attempt.js"
import { RowBuffer } from "./buffer.js"
import { closeTimeoutMessage, closeTimeoutReason, drainWorkers, engineFailureReason } from "./close.js"
import { Completion } from "./completion.js"
import { awaitGroups, FlushRequests } from "./flushRequests.js"
import { type Ack, type Classified, type Group, makeGroup, type Part, slicePart } from "./group.js"
import { Inline } from "./inline.js"
import { EngineObserver, type FlushTrigger, noop as noopObserver, type Observer } from "./observer.js"
import { KeyOrdering } from "./ordering.js"
import { type Made, Routes } from "./routes.js"
import { RowsAck } from "./rowsAck.js"
import { Settlement } from "./settle.js"
import type { Stats } from "./stats.js"
import { isLiveClock } from "./timeout.js"

type Restore = <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>

/** At most this many submitters' spans are linked from one flush span (OpenTelemetry's default limit). */
const maxSpanLinks = 128

export type { Stats }

/** @internal */
export class Engine {
  private readonly buffer: RowBuffer<Ack>

  private closing = false
  private closeStarted = false
  private accepted = 0
  private dispatched = 0

  /** Signals the waiting workers once the buffer holds `wakeAt` rows, or on flush/close. */
  private wake: Completion | undefined = undefined
  private wakeAt = 1
  /** Submitters waiting for room in the buffer, in the order they came (see `signalSpace`). */
  private readonly waitingForRoom = new Set<() => void>()
  private readonly flushRequests: FlushRequests
  private readonly inFlight = new Set<Group>()
  /** Rows of handed-off (retrying) groups not finished, per target; and submitters waiting on it. */
  private readonly backlog = new Map<Target.Any, number>()
  private readonly backlogSpace = new Map<Target.Any, Completion>()
  /** Completed once closing has drained the flow and ended the failures stream. */
  private readonly done = new Completion()
  private readonly keys = new KeyOrdering()
  private readonly attempts: Attempts
  private readonly settlement: Settlement
  private workers: ReadonlyArray<Fiber.RuntimeFiber<void>> = []
  /** When the current partial batch started filling: the flush interval is counted from here. */
  private batchStart: number | undefined = undefined
  private readonly ordering: boolean
  /** When a submit last yielded to the event loop (performance.now()). */
  private lastTurn = performance.now()
  /** The rejection of each target after close (see `rejectClosed`). */
  private readonly closedErrors = new Map<string, Effect.Effect<never, BatchFlowClosed>>()
  private readonly intervalMillis: number
  private readonly runtime: Runtime.Runtime<never> | undefined
  /** Whether waits may use plain timers: the clock is Effect's live one (see timeout.ts). */
  private readonly plainTimer: boolean
  /** `submitTimeout` in milliseconds (infinity: submits wait as long as it takes). */
  private readonly submitTimeoutMillis: number
  /** Whether row values may be shown, and which columns never are. */
  private readonly redaction: Redact.Redaction
  /** Failures queued for the `onFailure` handler (see `runOnFailure`), when there is one. */
  readonly onFailureBox: Mailbox.Mailbox<BatchFailure> | undefined
  /** Dead-letter rows waiting for room in the buffer (at most `bufferSize`). */
  private letters: Array<unknown> = []
  /** Whether failures still produce dead letters: not once the close deadline has passed. */
  private lettersOpen = true
  private deadLettered = 0
  private droppedDeadLetters = 0
  private droppedOnFailure = 0
  /**
   * When close started (for what is left of `closeTimeout`). NaN until then, not 0: V8 stores a field
   * that starts as a small integer differently from one holding a timestamp, and the change at the
   * first close gave the engine's next instances a new layout, deoptimizing its compiled methods.
   */
  private closeStartedAt = Number.NaN

  constructor(
    private readonly config: BatchFlowConfig,
    routes: Routes,
    semaphore: Effect.Semaphore,
    private readonly failureBox: Mailbox.Mailbox<BatchFailure>,
    onFailureBox: Mailbox.Mailbox<BatchFailure> | undefined,
    private readonly observer: Observer,
    private readonly clock: Clock.Clock,
    /** Executor calls taking at least this long (retries included) are logged as a warning. */
    slowBatchMillis: number,
    /**
     * Whether spans are made (`BatchFlow.flush`, `BatchFlow.execute`, links to submitters' spans):
     * only when the tracer of the layer's fibers is not Effect's default one (`recordsSpans`).
     */
    private readonly tracing: boolean,
    /**
     * The runtime the flow was started in. When no spans are made, group and attempt fibers start
     * from it instead of reading the current fiber's runtime each time (what differs between them
     * is only the parent span).
     */
    runtime: Runtime.Runtime<never>
  ) {
    this.runtime = tracing ? undefined : runtime
    this.plainTimer = isLiveClock(clock)
    this.buffer = new RowBuffer(config.bufferSize)
    this.ordering = config.concurrency > 1
    this.intervalMillis = Duration.toMillis(config.flushInterval)
    this.submitTimeoutMillis = Duration.toMillis(config.submitTimeout)
    this.redaction = Redact.make(config)
    this.flushRequests = new FlushRequests()
    this.onFailureBox = onFailureBox
    this.settlement = new Settlement(
      observer,
      clock,
      (target, error) => routes.of(target).classify(error),
      failureBox,
      this.redaction,
      (target, failure) => this.reported(target, failure)
    )
    this.attempts = new Attempts(
      config,
      routes,
      semaphore,
      observer,
      clock,
      slowBatchMillis,
      tracing ? undefined : runtime,
      tracing,
      (target, part, exit) => this.settlement.late(target, part, exit)
    )
  }

  private get size(): number {
    return this.buffer.size
  }

  // ---------------------------------------------------------------- submit → buffer

  /**
   * Per-row `submit`: the row is validated, copied and put in the buffer when a generator `yield*`s
   * the effect (see inline.ts), so a submit that finds room costs no run-loop operation.
   */
  submit<A>(
    target: Target.Target<A>,
    row: A
  ): Effect.Effect<void, InvalidRow | BatchFlowClosed | BufferFull> {
    return new Submit(this, target, row)
  }

  /** @internal What `submit` does at once; returns the rest (`Effect.void` when the row is in). */
  offer(target: Target.Any, row: unknown): Effect.Effect<void, InvalidRow | BatchFlowClosed | BufferFull> {
    const invalid = target.validate(row)
    return invalid === undefined
      ? this.enqueue(target, target.copy(row as never), undefined, this.currentSpan())
      : this.rejectInvalid(invalid)
  }

  /**
   * Outside Effect: accepts the row at once if there is room, without waiting. Returns `false`, and
   * accepts nothing, when the buffer (or the target's retry backlog) is full or the flow is closed.
   * Throws the `InvalidRow` of a row that fails validation.
   */
  unsafeOffer<A>(target: Target.Target<A>, row: A): boolean {
    const result = this.acceptNow(target, row)
    if (typeof result === "number") return true
    if (typeof result !== "string") throw this.invalidError(result)
    this.observer.submitRejected(target.name, result)
    return false
  }

  /**
   * `unsafeOffer` and `trySubmit`: validates the row and accepts it if there is room now (the new
   * buffer size), or says why not; never waits. Counts nothing.
   */
  acceptNow(target: Target.Any, row: unknown): number | "closed" | "full" | InvalidRow {
    const invalid = target.validate(row)
    if (invalid !== undefined) return invalid
    if (this.closing) return "closed"
    if (!this.hasRoom(target)) return "full"
    return this.accept(target, target.copy(row as never), undefined, this.currentSpan())
  }

  /** Whether the buffer, and the target's retry backlog, have room for a row. */
  private hasRoom(target: Target.Any): boolean {
    return this.buffer.size < this.buffer.capacity && !this.backlogFull(target)
  }

  /**
   * The span of the fiber running now, for the flush span's links: looked up only when spans are
   * recorded at all (see `tracing`).
   */
  private currentSpan(): Tracer.AnySpan | undefined {
    if (!this.tracing) return undefined
    const fiber = Fiber.getCurrentFiber()
    return fiber._tag === "Some" ? fiber.value.currentSpan : undefined
  }

  write<A>(
    target: Target.Target<A>,
    row: A
  ): Effect.Effect<void, InvalidRow | BatchFlowClosed | BufferFull | BatchFailure> {
    return Effect.withFiberRuntime(
      (fiber): Effect.Effect<void, InvalidRow | BatchFlowClosed | BufferFull | BatchFailure> => {
        const invalid = target.validate(row)
        if (invalid !== undefined) return this.rejectInvalid(invalid)
        const ack: Ack = new Completion()
        const span = this.tracing ? fiber.currentSpan : undefined
        return Effect.zipRight(this.enqueue(target, target.copy(row), ack, span), ack.await)
      }
    )
  }

  /**
   * Validates every row (an invalid one rejects the call, as `submitAll`), enqueues them all with one
   * shared ack, and waits until every row is committed or reported; succeeds with the distinct
   * failures of its rows (none: all committed).
   */
  writeAll<A>(
    target: Target.Target<A>,
    input: Iterable<A>
  ): Effect.Effect<ReadonlyArray<BatchFailure>, InvalidRow | BatchFlowClosed | BufferFull> {
    return Effect.suspend(
      (): Effect.Effect<ReadonlyArray<BatchFailure>, InvalidRow | BatchFlowClosed | BufferFull> => {
        const rows = this.copiesOf(target, input)
        if (!Array.isArray(rows)) return rows
        if (rows.length === 0) return Effect.succeed([])
        const ack = new RowsAck(rows.length)
        return Effect.zipRight(
          this.enqueueAll(target, rows, 0, this.currentSpan(), ack),
          Effect.map(ack.all.await, () => ack.reported)
        )
      }
    )
  }

  /** Like `submit`, the work is done when the effect is `yield*`ed (see inline.ts). */
  submitAll<A>(
    target: Target.Target<A>,
    input: Iterable<A>
  ): Effect.Effect<void, InvalidRow | BatchFlowClosed | BufferFull> {
    return new SubmitAll(this, target, input)
  }

  /** @internal What `submitAll` does at once; returns the rest (`Effect.void` when all are in). */
  offerAll(
    target: Target.Any,
    input: Iterable<unknown>
  ): Effect.Effect<void, InvalidRow | BatchFlowClosed | BufferFull> {
    const rows = this.copiesOf(target, input)
    if (!Array.isArray(rows)) return rows
    return rows.length === 0 ? Effect.void : this.enqueueAll(target, rows, 0, this.currentSpan())
  }

  /**
   * `submitAll` and `writeAll`: every row validated first, then the copies the flow keeps (see
   * `Target.copy`); or the rejection of the first invalid row, with its `index`.
   */
  private copiesOf(
    target: Target.Any,
    input: Iterable<unknown>
  ): Array<unknown> | Effect.Effect<never, InvalidRow> {
    const given = Array.isArray(input) ? (input as ReadonlyArray<unknown>) : Array.from(input)
    const rows = new Array<unknown>(given.length)
    for (let i = 0; i < given.length; i++) {
      const invalid = target.validate(given[i])
      if (invalid !== undefined) return this.rejectInvalid(withIndex(invalid, i))
      rows[i] = target.copy(given[i] as never)
    }
    return rows
  }

  private invalidError(invalid: InvalidRow): InvalidRow {
    this.observer.submitRejected(invalid.target, "invalid_row")
    return this.redaction.logRowValues ? withValue(invalid, this.redaction) : invalid
  }

  private rejectInvalid(invalid: InvalidRow): Effect.Effect<never, InvalidRow> {
    return Effect.fail(this.invalidError(invalid))
  }

  /**
   * After close, producers that keep calling must cost little and never starve the drain: one
   * error per target, made once (constructing a tagged error costs ~15 µs), and a turn of the event
   * loop at most every 50 ms, so the close deadline's timer fires on time.
   */
  private rejectClosed(target: Target.Any): Effect.Effect<never, BatchFlowClosed> {
    this.observer.submitRejected(target.name, "closed")
    let rejected = this.closedErrors.get(target.name)
    if (rejected === undefined) {
      rejected = Effect.fail(new BatchFlowClosed({ target: target.name }))
      this.closedErrors.set(target.name, rejected)
    }
    const now = performance.now()
    if (now - this.lastTurn < 50) return rejected
    this.lastTurn = now
    return Effect.zipRight(eventLoopTurn, rejected)
  }

  /**
   * `waitingSince`: when this submit first found no room (only such submits are timed, and bounded
   * by `submitTimeout`).
   */
  private enqueue(
    target: Target.Any,
    row: unknown,
    ack: Ack | undefined,
    span: Tracer.AnySpan | undefined,
    waitingSince?: number
  ): Effect.Effect<void, BatchFlowClosed | BufferFull> {
    if (this.closing) return this.rejectClosed(target)
    if (!this.hasRoom(target)) {
      const since = waitingSince ?? this.clock.unsafeCurrentTimeMillis()
      return Effect.zipRight(
        this.waitForRoom(target, since, 0),
        Effect.suspend(() => this.enqueue(target, row, ack, span, since))
      )
    }
    if (waitingSince !== undefined) {
      this.observer.submitWaited(target.name, this.clock.unsafeCurrentTimeMillis() - waitingSince)
    }
    return this.afterAccept(this.accept(target, row, ack, span))
  }

  /**
   * Once per full batch, let the workers run: rows that wait in the buffer live longer, and rows
   * that survive young-generation collections are what makes GC expensive. At most every 50 ms,
   * yield to the event loop itself: with a synchronous sink nothing else would let timers (the
   * flush interval, timeouts, signal handlers) run while producers keep submitting.
   */
  private afterAccept(size: number): Effect.Effect<void> {
    if (size % this.config.flushSize !== 0) return Effect.void
    const now = performance.now()
    if (now - this.lastTurn < 50) return Effect.yieldNow()
    this.lastTurn = now
    return eventLoopTurn
  }

  /**
   * `trySubmit`: accepts the row if there is room now, and answers whether it did; never waits. A
   * full buffer (or retry backlog) answers `false`, counted as a `full` rejection.
   */
  trySubmit<A>(target: Target.Target<A>, row: A): Effect.Effect<boolean, InvalidRow | BatchFlowClosed> {
    return Effect.suspend((): Effect.Effect<boolean, InvalidRow | BatchFlowClosed> => {
      const result = this.acceptNow(target, row)
      if (typeof result === "number") return Effect.as(this.afterAccept(result), true)
      if (result === "closed") return this.rejectClosed(target)
      if (result === "full") {
        this.observer.submitRejected(target.name, "full")
        return Effect.succeed(false)
      }
      return this.rejectInvalid(result)
    })
  }

  /**
   * Waits for room: in the target's retry backlog when that is full, else in the buffer; for at
   * most `submitTimeout` since the call first found none. Past it, fails with `BufferFull` (the wait
   * is interrupted: nothing is enqueued). `accepted`: rows of the call accepted before.
   */
  private waitForRoom(target: Target.Any, since: number, accepted: number): Effect.Effect<void, BufferFull> {
    const wait = this.backlogFull(target) ? this.awaitBacklog(target) : this.awaitSpace()
    const limit = this.submitTimeoutMillis
    if (limit === Number.POSITIVE_INFINITY) return wait
    const bufferFull = () => {
      this.observer.submitRejected(target.name, "full")
      return new BufferFull({
        target: target.name,
        bufferSize: this.config.bufferSize,
        waitedMillis: this.clock.unsafeCurrentTimeMillis() - since,
        accepted
      })
    }
    const left = since + limit - this.clock.unsafeCurrentTimeMillis()
    if (left <= 0) return Effect.fail(bufferFull())
    return Effect.timeoutFail(wait, { duration: Duration.millis(left), onTimeout: bufferFull })
  }

  /** Puts one row in the buffer (the caller checked for room); returns the buffer's new size. */
  private accept(
    target: Target.Any,
    row: unknown,
    ack: Ack | undefined,
    span: Tracer.AnySpan | undefined
  ): number {
    const buffer = this.buffer
    buffer.push(target, row, ack, span)
    this.accepted++
    const size = buffer.size
    if (this.wake !== undefined && size >= this.wakeAt) this.signalWake()
    return size
  }

  /**
   * Rows that fit in the buffer are accepted together; a call with more rows than the buffer holds is
   * accepted in pieces as room frees up.
   */
  private enqueueAll(
    target: Target.Any,
    rows: ReadonlyArray<unknown>,
    from: number,
    span: Tracer.AnySpan | undefined,
    ack?: Ack | undefined,
    waitingSince?: number
  ): Effect.Effect<void, BatchFlowClosed | BufferFull> {
    if (this.closing) return this.rejectClosed(target)
    const free = this.buffer.free
    const remaining = rows.length - from
    const piece = remaining <= this.config.bufferSize ? remaining : Math.max(free, 0)
    if (piece === 0 || piece > free || this.backlogFull(target)) {
      const since = waitingSince ?? this.clock.unsafeCurrentTimeMillis()
      return Effect.zipRight(
        this.waitForRoom(target, since, from),
        Effect.suspend(() => this.enqueueAll(target, rows, from, span, ack, since))
      )
    }
    if (waitingSince !== undefined) {
      this.observer.submitWaited(target.name, this.clock.unsafeCurrentTimeMillis() - waitingSince)
    }
    this.acceptAll(target, rows, from, from + piece, span, ack)
    return from + piece === rows.length ? Effect.void : this.enqueueAll(target, rows, from + piece, span, ack)
  }

  /** Puts `rows[from, to)` in the buffer (the caller checked for room), as `accept` does one row. */
  private acceptAll(
    target: Target.Any,
    rows: ReadonlyArray<unknown>,
    from: number,
    to: number,
    span: Tracer.AnySpan | undefined,
    ack?: Ack | undefined
  ): void {
    this.buffer.pushAll(target, rows, from, to, span, ack)
    this.accepted += to - from
    if (this.wake !== undefined && this.size >= this.wakeAt) this.signalWake()
  }

  private awaitSpace(): Effect.Effect<void> {
    return Effect.async<void>((resume) => {
      const waiter = () => resume(Effect.void)
      this.waitingForRoom.add(waiter)
      // The first one to wait makes the workers take the partial batch now (see `nextStep`).
      if (this.waitingForRoom.size === 1) this.signalWake()
      return Effect.sync(() => {
        this.waitingForRoom.delete(waiter)
      })
    })
  }

  /**
   * Room was made: wakes the submitters that waited longest, one per `flushSize` rows of room (a
   * woken submitter fills what it finds; the others would only wake to wait again), or all of them
   * on close or once the buffer is empty. A woken submitter may leave room unused (it had one row
   * left, or was interrupted): once those woken have had their turn of the event loop, room that is
   * still free wakes the next ones.
   */
  private signalSpace(): void {
    const waiting = this.waitingForRoom
    if (waiting.size === 0) return
    let wake =
      this.closing || this.buffer.size === 0
        ? waiting.size
        : Math.ceil(this.buffer.free / this.config.flushSize)
    for (const waiter of waiting) {
      if (wake-- <= 0) break
      waiting.delete(waiter)
      waiter()
    }
    if (waiting.size > 0 && !this.spaceRecheck) {
      this.spaceRecheck = true
      setImmediate(this.recheckSpace)
    }
  }

  /** Whether a check of unused room is due (see `signalSpace`). */
  private spaceRecheck = false
  private readonly recheckSpace = (): void => {
    this.spaceRecheck = false
    if (this.buffer.free > 0) this.signalSpace()
  }

  private signalWake(): void {
    if (this.wake !== undefined) {
      this.wake.unsafeDone(Exit.void)
      this.wake = undefined
    }
  }

  /** Several workers may wait at once: they share one signal, fired at the lowest size any asked for. */
  private armWake(at: number): Completion {
    if (this.wake === undefined) {
      this.wake = new Completion()
      this.wakeAt = at
    } else {
      this.wakeAt = Math.min(this.wakeAt, at)
    }
    return this.wake
  }

  // ---------------------------------------------------------------- flush triggers (the workers)

  /**
   * One of `concurrency` workers: waits for a trigger (a full batch, the interval, a flush request or
   * close), takes up to `flushSize` rows and writes them, then loops; ends once closed and drained.
   * Taking batches from the workers themselves (rather than a dispatcher forking a fiber per batch)
   * keeps rows in the buffer for as short a time as possible: see docs/development/architecture.md.
   */
  readonly worker: Effect.Effect<void> = Effect.gen(this, function* () {
    while (true) {
      const now = this.clock.unsafeCurrentTimeMillis()
      const next = this.nextStep(now)
      if (next === "done") return
      if (typeof next !== "string") {
        yield* next
        continue
      }
      yield* Effect.uninterruptibleMask((restore) =>
        Effect.suspend(() => this.flushBatch(Math.min(this.size, this.config.flushSize), next, now, restore))
      )
      this.batchStart = this.size === 0 ? undefined : this.clock.unsafeCurrentTimeMillis()
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
      // With a dead-letter target, a group still writing may yet fail and add dead letters: the
      // workers stay until every group is done (`finish` wakes them).
      const more = this.config.deadLetter !== undefined && this.inFlight.size > 0
      return this.closing && !more ? "done" : this.armWake(1).await
    }
    if (size >= this.config.flushSize) return "size"
    if (this.closing) return "close"
    if (this.flushRequests.pending) return "manual"
    // A submitter waiting for room also makes the partial batch go now rather than after the interval.
    if (this.waitingForRoom.size > 0) return "backpressure"
    this.batchStart ??= now
    const remaining = this.batchStart + this.intervalMillis - now
    if (remaining <= 0) return "interval"
    // One worker keeps the interval; the others wait for a full batch (or a flush, close…) without a
    // timer of their own: otherwise every idle worker woken by a batch's first row would arm one.
    const wake = this.armWake(this.config.flushSize)
    if (this.intervalKept) return wake.await
    this.intervalKept = true
    // Whole milliseconds: clock readings can be fractional (TestClock instants set by jittered
    // sleeps), and a sleep shorter than the clock's precision at that instant would end at once,
    // leaving the same sub-ulp `remaining` on every turn: a busy loop.
    return Effect.zipRight(
      this.plainTimer
        ? wake.awaitAtMost(Math.ceil(remaining))
        : Effect.raceFirst(Effect.sleep(Duration.millis(Math.ceil(remaining))), wake.await),
      this.intervalDone
    )
  }

  /** Whether a worker is waiting for the flush interval (see `nextStep`). */
  private intervalKept = false
  /**
   * The interval's worker stops waiting (to flush, or woken): the other waiting workers are woken
   * too, so that one of them keeps the interval while it writes.
   */
  private readonly intervalDone = Effect.sync(() => {
    this.intervalKept = false
    this.signalWake()
  })

  // ---------------------------------------------------------------- flush → group

  /** Takes `n` rows off the buffer and groups them by target (arrival order kept inside a group). */
  private take(
    n: number,
    trigger: FlushTrigger,
    now: number,
    links: Set<Tracer.AnySpan> | undefined
  ): ReadonlyArray<Group> {
    const waitedMillis = this.batchStart === undefined ? 0 : now - this.batchStart
    const assembleStart = this.clock.unsafeCurrentTimeNanos()
    const grouped = this.buffer.take(n, links, maxSpanLinks)
    this.dispatched += n
    if (this.letters.length > 0) this.moveLetters()
    this.signalSpace()

    const groups = grouped.map((g) => this.startGroup(g.target, g.rows, g.acks))
    this.flushRequests.resolve(this.dispatched, this.inFlight)
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
    // Another worker may have emptied the buffer since this one decided to flush: nothing to do.
    if (n === 0) return Effect.void
    const links = this.tracing ? new Set<Tracer.AnySpan>() : undefined
    const groups = this.take(n, trigger, now, links)
    const failed = () => groups.some((group) => group.failed)
    // Without spans, every group fiber may start from the flow's own runtime (see `runtime`).
    const run =
      this.runtime !== undefined
        ? restore(this.runBatch(groups, this.runtime))
        : Effect.flatMap(Effect.runtime<never>(), (runtime) => restore(this.runBatch(groups, runtime)))
    const traced =
      links === undefined
        ? run
        : Effect.zipRight(
            run,
            Effect.suspend(() =>
              Effect.annotateCurrentSpan("batchflow.outcome", failed() ? "failure" : "success")
            )
          ).pipe(
            Effect.withSpan("BatchFlow.flush", {
              attributes: {
                "batchflow.trigger": trigger,
                "batchflow.rows": n,
                "batchflow.groups": groups.length
              },
              links: Array.from(
                links,
                (span): Tracer.SpanLink => ({ _tag: "SpanLink", span, attributes: {} })
              ),
              captureStackTrace: false
            })
          )
    return Effect.ensuring(
      traced,
      Effect.suspend(() => {
        const finished = () =>
          this.observer.batchFinished({
            trigger,
            rows: n,
            groups: groups.length,
            durationMillis: this.clock.unsafeCurrentTimeMillis() - now,
            failed: failed()
          })
        // A group that handed off to back off is still writing: the batch is finished with it.
        if (groups.every((group) => group.done.isDone)) {
          finished()
          return Effect.void
        }
        return Effect.asVoid(Effect.forkDaemon(Effect.zipRight(awaitGroups(groups), Effect.sync(finished))))
      })
    )
  }

  /**
   * Writes one flush's groups: one fiber per group, each started at once (`Runtime.runFork` runs it
   * synchronously, so a group whose executor answers synchronously is done before it returns). The
   * worker waits for each group to finish, or to hand off: a group about to back off before a retry
   * goes on in its own fiber while the worker takes the next batch, so that a failing target's
   * retries never hold the workers (and so the other targets). Once taken, each group is settled
   * (committed or reported) whatever happens to the worker: its fiber is its own.
   */
  private runBatch(groups: ReadonlyArray<Group>, runtime: Runtime.Runtime<never>): Effect.Effect<void> {
    const pending: Array<Group> = []
    for (const group of groups) {
      // The runtime was taken inside the worker's uninterruptible region: the group's fiber starts
      // interruptible again, so that the close deadline can stop it.
      group.fiber = Runtime.runFork(runtime)(Effect.interruptible(this.runGroup(group)))
      if (!group.released.isDone) pending.push(group)
    }
    if (pending.length === 0) return Effect.void
    if (pending.length === 1) return pending[0]!.released.await
    return Effect.forEach(pending, (g) => g.released.await, { discard: true })
  }

  /**
   * A group about to back off before a retry releases its worker (see `runBatch`). Its rows count
   * against its target's backlog until it finishes: past `bufferSize` rows, submits to that target
   * wait (`enqueue`), so a target that keeps failing cannot grow without bound, and the others go on.
   */
  private handOff(group: Group): void {
    if (group.released.isDone) return
    group.backlogRows = group.rows.length
    const target = group.target
    this.backlog.set(target, (this.backlog.get(target) ?? 0) + group.backlogRows)
    group.released.unsafeDone(Exit.void)
  }

  private backlogDone(group: Group): void {
    // Counted from `backlogRows`: a committed group's `rows` are emptied (settle.ts).
    if (group.backlogRows === 0) return
    const target = group.target
    const left = (this.backlog.get(target) ?? 0) - group.backlogRows
    if (left > 0) this.backlog.set(target, left)
    else this.backlog.delete(target)
    if (left < this.config.bufferSize) {
      const waiting = this.backlogSpace.get(target)
      if (waiting !== undefined) {
        this.backlogSpace.delete(target)
        waiting.unsafeDone(Exit.void)
      }
    }
  }

  /** Whether `target` has `bufferSize` rows in retry (one map lookup, and only while any has). */
  private backlogFull(target: Target.Any): boolean {
    return this.backlog.size !== 0 && (this.backlog.get(target) ?? 0) >= this.config.bufferSize
  }

  /** Waits until `target`'s backlog of retrying rows is under `bufferSize` again. */
  private awaitBacklog(target: Target.Any): Effect.Effect<void> {
    return Effect.suspend(() => {
      let waiting = this.backlogSpace.get(target)
      if (waiting === undefined) {
        waiting = new Completion()
        this.backlogSpace.set(target, waiting)
      }
      return waiting.await
    })
  }

  /** A group of the batch just taken: ordered after earlier same-key groups, and counted in flight. */
  private startGroup(
    target: Target.Any,
    rows: ReadonlyArray<unknown>,
    acks: ReadonlyArray<Ack | undefined> | undefined
  ): Group {
    const group = makeGroup(target, rows, acks)
    if (this.ordering && target.ordered) this.keys.order(group)
    this.inFlight.add(group)
    return group
  }

  // ---------------------------------------------------------------- execute → acknowledge

  /**
   * A group's fiber: waits for the earlier same-key groups, writes the group's parts, and once it ends
   * (whatever ended it) reports what is still open and finishes the group. Run in an interruptible
   * fiber; `onExit` runs its handler uninterruptibly.
   */
  private runGroup(group: Group): Effect.Effect<void> {
    const part = this.runPart(group, group)
    const body =
      group.deps.length === 0
        ? part
        : Effect.zipRight(
            Effect.forEach(group.deps, (dep) => dep.done.await, { discard: true }),
            part
          )
    return Effect.onExit(body, (exit) => {
      if (Exit.isSuccess(exit)) {
        this.finish(group)
        return Effect.void
      }
      const classified: Classified = Exit.isInterrupted(exit)
        ? {
            error: closeTimeoutMessage(this.config.closeTimeout, "batch"),
            classification: closeTimeoutReason
          }
        : { error: Cause.squash(exit.cause), classification: engineFailureReason }
      return Effect.zipRight(
        this.abandonGroup(group, classified),
        Effect.sync(() => this.finish(group))
      )
    })
  }

  /**
   * Reports, now, every part of a group that is not settled: the flow stops waiting for it (the close
   * deadline, or its fiber ended otherwise). Rows of an attempt still running are `unknown_outcome`
   * (its late answer is recorded); the others were never written and get `classified`.
   */
  private abandonGroup(group: Group, classified: Classified): Effect.Effect<void> {
    const open = Array.from(group.open)
    group.open.clear()
    if (open.length > 0) group.failed = true
    return Effect.all(
      open.map((part) => this.settlement.abandon(group.target, part, classified)),
      { discard: true }
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
      return this.attempts.run(group.target, part, () => this.handOff(group))
    }).pipe(
      Effect.matchEffect({
        onSuccess: (result) => {
          group.open.delete(part)
          if (isPartial(result) && result.failed.length > 0) {
            group.failed = true
            return this.settlement.partial(group.target, part, result)
          }
          return this.settlement.success(group.target, part)
        },
        onFailure: (failure) => this.failed(group, part, failure)
      })
    )
  }

  /** A part's last attempt failed: isolate bad rows (a row-level error) or report the part. */
  private failed(group: Group, part: Part, failure: Classified): Effect.Effect<void> {
    group.open.delete(part)
    if (failure.classification.rowLevel === true && part.rows.length > 1) {
      this.settlement.splitting(part)
      const mid = part.rows.length >> 1
      const first = slicePart(part, 0, mid)
      const second = slicePart(part, mid, part.rows.length)
      // Both halves are open before either runs, so an interruption reports the second too.
      group.open.add(first)
      group.open.add(second)
      return Effect.zipRight(this.runPart(group, first), this.runPart(group, second))
    }
    group.failed = true
    return this.settlement.failure(group.target, part, failure)
  }

  private finish(group: Group): void {
    group.fiber = undefined
    this.keys.finish(group)
    this.inFlight.delete(group)
    this.backlogDone(group)
    group.released.unsafeDone(Exit.void)
    group.done.unsafeDone(Exit.void)
    this.observer.depth(this.size, this.inFlight.size)
    if (this.closing && this.config.deadLetter !== undefined) this.signalWake()
  }

  // ---------------------------------------------------------------- failures: handler, dead letters

  /** Every reported failure (see settle.ts): queued for `onFailure`, and its rows dead-lettered. */
  private reported(target: Target.Any, failure: BatchFailure): Effect.Effect<void> {
    if (this.onFailureBox !== undefined && !this.onFailureBox.unsafeOffer(failure)) {
      this.droppedOnFailure++
      this.observer.failureDropped("on_failure_full")
    }
    const deadLetter = this.config.deadLetter
    if (deadLetter === undefined || target === deadLetter.target) return Effect.void
    if (!this.lettersOpen) return this.dropLetters(failure.rows.length)
    const warnings: Array<Effect.Effect<void>> = []
    const dead = deadLetter.target
    const failedAt = new Date(this.clock.unsafeCurrentTimeMillis())
    const error = failure.message
    const rows: Array<unknown> = []
    for (const row of failure.rows) {
      let letter: unknown
      try {
        letter = deadLetter.toRow({
          target: failure.target,
          reason: failure.reason,
          outcome: failure.outcome,
          attempts: failure.attempts,
          error,
          row,
          failedAt
        })
      } catch (cause) {
        warnings.push(this.dropLetters(1, `deadLetter.toRow threw: ${String(cause)}`))
        continue
      }
      const invalid = dead.validate(letter)
      if (invalid !== undefined) {
        warnings.push(
          this.dropLetters(1, `deadLetter.toRow made an invalid row for "${dead.name}": ${invalid.message}`)
        )
        continue
      }
      rows.push(dead.copy(letter as never))
    }
    const room = this.config.bufferSize - this.letters.length
    if (rows.length > room) {
      warnings.push(this.dropLetters(rows.length - Math.max(room, 0), "the dead-letter backlog is full"))
    }
    for (let i = 0; i < rows.length && i < room; i++) this.letters.push(rows[i])
    this.moveLetters()
    return warnings.length === 0 ? Effect.void : Effect.all(warnings, { discard: true })
  }

  /** Moves waiting dead letters into the buffer, as many as it has room for. */
  private moveLetters(): void {
    const deadLetter = this.config.deadLetter
    const n = Math.min(this.letters.length, this.buffer.free)
    if (deadLetter === undefined || n <= 0) return
    this.acceptAll(deadLetter.target, this.letters, 0, n, undefined)
    this.letters = n === this.letters.length ? [] : this.letters.slice(n)
    this.deadLettered += n
  }

  /** Counts dead-letter rows that will not be written; the warning is logged by the caller. */
  private dropLetters(rows: number, why = "the flow is past its close deadline"): Effect.Effect<void> {
    this.droppedDeadLetters += rows
    this.observer.failureDropped("dead_letter_full")
    return Effect.logWarning(
      `${rows} dead-letter row(s) not written: ${why}. Their failure is still reported.`
    )
  }

  // ---------------------------------------------------------------- flush, close, introspection

  readonly flush: Effect.Effect<void> = Effect.suspend(() => {
    const mark = this.accepted
    if (mark <= this.dispatched) return awaitGroups(Array.from(this.inFlight))
    const request = this.flushRequests.add(mark)
    this.signalWake()
    return Effect.flatMap(request.await, awaitGroups)
  })

  private onFailureFiber: Fiber.RuntimeFiber<void> | undefined = undefined

  start(
    workers: ReadonlyArray<Fiber.RuntimeFiber<void>>,
    onFailure: Fiber.RuntimeFiber<void> | undefined
  ): void {
    this.workers = workers
    this.onFailureFiber = onFailure
  }

  readonly close: Effect.Effect<void> = Effect.suspend(() => {
    if (this.closeStarted) return this.done.await
    this.closeStarted = true
    this.closeStartedAt = this.clock.unsafeCurrentTimeMillis()
    this.closing = true
    this.signalWake()
    this.signalSpace()
    // Submitters waiting on a target's backlog are told too: they see `closing` and are rejected.
    for (const waiting of this.backlogSpace.values()) waiting.unsafeDone(Exit.void)
    this.backlogSpace.clear()
    return Effect.zipRight(Effect.forkDaemon(Effect.interruptible(this.shutdown)), this.done.await)
  })

  /**
   * Runs once, on close: lets the workers drain the buffer (within `closeTimeout`, see `drainWorkers`),
   * then answers pending flushes, ends the failures stream and completes `done`.
   */
  private readonly shutdown: Effect.Effect<void> = Effect.gen(this, function* () {
    yield* drainWorkers(
      this.workers,
      Effect.suspend(() => awaitGroups(Array.from(this.inFlight))),
      this.config.closeTimeout,
      (classification, error) => this.reportUnfinished(classification, error),
      Effect.suspend(() =>
        Effect.forEach(
          this.inFlight,
          (group) => (group.fiber === undefined ? Effect.void : Fiber.interruptFork(group.fiber)),
          {
            discard: true
          }
        )
      )
    )
    this.flushRequests.endAll()
    yield* this.failureBox.end
    if (this.onFailureBox !== undefined) {
      yield* this.onFailureBox.end
      const left =
        this.closeStartedAt +
        Duration.toMillis(this.config.closeTimeout) -
        this.clock.unsafeCurrentTimeMillis()
      if (this.onFailureFiber !== undefined) {
        const caughtUp = yield* Fiber.await(this.onFailureFiber).pipe(
          Effect.timeoutOption(Duration.millis(Math.max(left, 0)))
        )
        if (caughtUp._tag === "None") yield* Fiber.interruptFork(this.onFailureFiber)
      }
    }
    this.done.unsafeDone(Exit.void)
  })

  /**
   * Reports, at once, every row not settled: those still in the buffer (never sent) with
   * `classification`, and the open parts of the groups in flight (see `abandonGroup`). Settled
   * synchronously, before the workers are told to stop, so no worker can settle them again; only
   * the log lines run after.
   */
  private reportUnfinished(classification: Retry.Classification, error: unknown): Effect.Effect<void> {
    this.lettersOpen = false
    const dropped = this.letters.length > 0 ? this.dropLetters(this.letters.length) : Effect.void
    this.letters = []
    const grouped = this.buffer.take(this.buffer.size)
    const buffered = this.settlement.unrun(grouped, classification, error)
    const classified: Classified = {
      error: closeTimeoutMessage(this.config.closeTimeout, "batch"),
      classification
    }
    const inFlight = Array.from(this.inFlight, (group) => this.abandonGroup(group, classified))
    this.observer.depth(0, this.inFlight.size)
    return Effect.all([dropped, buffered, ...inFlight], { discard: true })
  }

  get failures(): Stream.Stream<BatchFailure> {
    return Mailbox.toStream(this.failureBox)
  }

  readonly awaitDone: Effect.Effect<void> = this.done.await

  readonly isDone: Effect.Effect<boolean> = Effect.sync(() => this.done.isDone)

  readonly stats: Effect.Effect<Stats> = Effect.sync(() => ({
    buffered: this.size,
    inFlight: this.inFlight.size,
    accepted: this.accepted,
    committed: this.settlement.committed,
    failed: this.settlement.failed,
    unknownOutcome: this.settlement.unknownOutcome,
    lateCommitted: this.settlement.lateCommitted,
    lateFailed: this.settlement.lateFailed,
    retries: this.settlement.retries,
    droppedFailures: this.settlement.droppedFailures,
    deadLettered: this.deadLettered,
    droppedDeadLetters: this.droppedDeadLetters,
    droppedOnFailure: this.droppedOnFailure
  }))
}

/**
 * The key under which a flow made by `BatchFlow.make` carries the engine's `acceptNow`, for the
 * Promise facade (`offerNow`); not part of the public service.
 */
const OfferNow: unique symbol = Symbol.for("effect-batchflow/internal/OfferNow")

/** @internal The `OfferNow` entry of a flow's service object. */
export const offerNowEntry = (engine: Engine) => ({
  [OfferNow]: (target: Target.Any, row: unknown) => engine.acceptNow(target, row)
})

/**
 * @internal For the Promise facade: accepts the row at once if the flow has room (the new buffer
 * size), or says why not, counting nothing; `undefined` for a flow not made by `BatchFlow.make`.
 */
export const offerNow = (
  flow: object,
  target: Target.Any,
  row: unknown
): number | "closed" | "full" | InvalidRow | undefined => {
  const offer = (
    flow as { [OfferNow]?: (target: Target.Any, row: unknown) => ReturnType<Engine["acceptNow"]> }
  )[OfferNow]
  return offer === undefined ? undefined : offer(target, row)
}

/** `flow.submit(target, row)`: the engine's `offer`, run when the effect is (see inline.ts). */
class Submit extends Inline<InvalidRow | BatchFlowClosed | BufferFull> {
  constructor(
    private readonly engine: Engine,
    private readonly target: Target.Any,
    private readonly row: unknown
  ) {
    super()
  }
  protected now(): Effect.Effect<void, InvalidRow | BatchFlowClosed | BufferFull> {
    return this.engine.offer(this.target, this.row)
  }
}

/** `flow.submitAll(target, rows)`: the engine's `offerAll`, run when the effect is. */
class SubmitAll extends Inline<InvalidRow | BatchFlowClosed | BufferFull> {
  constructor(
    private readonly engine: Engine,
    private readonly target: Target.Any,
    private readonly rows: Iterable<unknown>
  ) {
    super()
  }
  protected now(): Effect.Effect<void, InvalidRow | BatchFlowClosed | BufferFull> {
    return this.engine.offerAll(this.target, this.rows)
  }
}

let nativeTracer: Tracer.Tracer | undefined

/**
 * Whether `tracer` records spans anyone can read: Effect's own default tracer keeps them in memory
 * only, so with it the engine makes no spans at all (they cost a third of a batch's Effect work).
 */
const recordsSpans = (tracer: Tracer.Tracer): boolean => {
  nativeTracer ??= Effect.runSync(Effect.tracer)
  return tracer !== nativeTracer
}

const eventLoopTurn: Effect.Effect<void> = Effect.async<void>((resume) => {
  setImmediate(() => resume(Effect.void))
})

/**
 * The `onFailure` handler's fiber: each failure in order, its errors and defects logged, until the
 * queue ends (at close).
 */
const runOnFailure = (
  box: Mailbox.Mailbox<BatchFailure>,
  handler: (failure: BatchFailure) => Effect.Effect<void, unknown>
): Effect.Effect<void> => {
  const one = (failure: BatchFailure) =>
    Effect.catchAllCause(
      Effect.suspend(() => handler(failure)),
      (cause) =>
        Effect.logError("The onFailure handler failed; the flow goes on.", cause).pipe(
          Effect.annotateLogs({ target: failure.target, reason: failure.reason })
        )
    )
  const loop: Effect.Effect<void> = Effect.flatMap(box.takeAll, ([failures, done]) =>
    Effect.zipRight(Effect.forEach(failures, one, { discard: true }), done ? Effect.void : loop)
  )
  return loop
}

/** @internal */
export const make = (
  config: BatchFlowConfig,
  executors: ReadonlyArray<Made>,
  userRules: ReadonlyArray<Retry.Rule>
): Effect.Effect<Engine, never, Scope.Scope> =>
  Effect.gen(function* () {
    const routes = new Routes(
      executors,
      userRules,
      executors.map((e) => e.name)
    )
    const semaphore = yield* Effect.makeSemaphore(config.concurrency)
    const failureBox = yield* Mailbox.make<BatchFailure>({
      capacity: config.failureBufferSize,
      strategy: "dropping"
    })
    const onFailureBox =
      config.onFailure === undefined
        ? undefined
        : yield* Mailbox.make<BatchFailure>({ capacity: config.failureBufferSize, strategy: "dropping" })
    const observer = Option.getOrElse(yield* Effect.serviceOption(EngineObserver), () => noopObserver)
    const clock = yield* Effect.clock
    const slowBatchThreshold = config.slowBatchThreshold
    const engine = new Engine(
      config,
      routes,
      semaphore,
      failureBox,
      onFailureBox,
      observer,
      clock,
      Duration.toMillis(slowBatchThreshold),
      recordsSpans(yield* Effect.tracer),
      yield* Effect.runtime<never>()
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
    const handler = config.onFailure
    const onFailure =
      onFailureBox === undefined || handler === undefined
        ? undefined
        : yield* Effect.forkScoped(Effect.interruptible(runOnFailure(onFailureBox, handler)))
    engine.start(workers, onFailure)
    // Registered after the forks, so it runs before the workers are interrupted: closing the scope
    // drains the buffer and waits for every in-flight write.
    yield* Effect.addFinalizer(() => engine.close)
    return engine
  })
