/**
 * The Promise facade over a running flow: the flow's layer built in a scope of its own, a runtime
 * to run the flow's effects, and a reader of the `failures` stream that calls the `onFailure`
 * callbacks.
 *
 * `submit` costs no Effect run when the buffer has room: the row is accepted at once (`offerNow`, the
 * engine's `acceptNow`, which counts nothing) and the call returns a promise that is already
 * resolved. A submit that finds the buffer full (or a target's retry backlog), an invalid row or a
 * closed flow runs the flow's `submit` through the runtime: it waits for room as an Effect submitter
 * would, with the same `submitTimeout`, and only a real rejection is counted.
 */
import * as Cause from "effect/Cause"
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Exit from "effect/Exit"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Runtime from "effect/Runtime"
import * as Scope from "effect/Scope"
import * as Stream from "effect/Stream"
import * as BatchFlow from "../../BatchFlow.js"
import { type BatchFailure, type BatchFailureOf, BatchFlowClosed } from "../../BatchFlowError.js"
import type * as Target from "../../Target.js"
import { offerNow } from "../engine/engine.js"
import type { FailureCallback, Flow } from "./api.js"
import type { FlowLayer } from "./backends.js"

/**
 * The error a failed run rejects with: the typed failure itself (an `Error` subclass with its
 * fields), never Effect's `FiberFailure` wrapper; a defect as it was thrown.
 */
const errorOf = (cause: Cause.Cause<unknown>): unknown => {
  const failure = Cause.failureOption(cause)
  if (failure._tag === "Some") return failure.value
  if (Cause.isInterruptedOnly(cause)) return new Error("effect-batchflow: the operation was interrupted")
  return Cause.squash(cause)
}

const resolved: Promise<void> = Promise.resolve()
const resolvedTrue: Promise<boolean> = Promise.resolve(true)
const resolvedFalse: Promise<boolean> = Promise.resolve(false)

/**
 * How long `close` waits, after the flow is done, for the callbacks of the last failures: a
 * callback that never returns must not keep `close` from returning.
 */
const callbackGrace = Duration.seconds(5)

class PromiseFlow implements Flow {
  private readonly callbacks = new Set<FailureCallback>()
  private reader: Fiber.RuntimeFiber<void> | undefined
  private closing = false
  private closed: Promise<void> | undefined
  private readonly closedErrors = new Map<string, BatchFlowClosed>()
  private readonly runExit: <A, E>(effect: Effect.Effect<A, E>) => Promise<Exit.Exit<A, E>>
  private readonly runSync: <A>(effect: Effect.Effect<A>) => A
  private readonly runFork: <A, E>(effect: Effect.Effect<A, E>) => Fiber.RuntimeFiber<A, E>

  constructor(
    private readonly flow: BatchFlow.BatchFlow,
    private readonly scope: Scope.CloseableScope,
    runtime: Runtime.Runtime<never>
  ) {
    this.runExit = Runtime.runPromiseExit(runtime)
    this.runSync = Runtime.runSync(runtime)
    this.runFork = Runtime.runFork(runtime)
  }

  private run<A, E>(effect: Effect.Effect<A, E>): Promise<A> {
    return this.runExit(effect).then((exit) =>
      exit._tag === "Success" ? exit.value : Promise.reject(errorOf(exit.cause))
    )
  }

  /** One error per target, made once: constructing a tagged error is costly (see the engine). */
  private closedError(target: Target.Any): BatchFlowClosed {
    let error = this.closedErrors.get(target.name)
    if (error === undefined) {
      error = new BatchFlowClosed({ target: target.name })
      this.closedErrors.set(target.name, error)
    }
    return error
  }

  submit<A>(target: Target.Target<A>, row: A): Promise<void> {
    if (this.closing) return Promise.reject(this.closedError(target))
    // Accepted at once when there is room, counting nothing; otherwise the flow's own submit runs
    // (it waits for room, or rejects and counts the rejection as an Effect caller's would).
    if (typeof offerNow(this.flow, target, row) === "number") return resolved
    return this.run(this.flow.submit(target, row))
  }

  trySubmit<A>(target: Target.Target<A>, row: A): Promise<boolean> {
    let accepted: boolean
    try {
      accepted = this.flow.unsafeOffer(target, row)
    } catch (error) {
      return Promise.reject(error)
    }
    if (accepted) return resolvedTrue
    return this.closing ? Promise.reject(this.closedError(target)) : resolvedFalse
  }

  unsafeOffer<A>(target: Target.Target<A>, row: A): boolean {
    return this.flow.unsafeOffer(target, row)
  }

  submitAll<A>(target: Target.Target<A>, rows: Iterable<A>): Promise<void> {
    return this.run(this.flow.submitAll(target, rows))
  }

  write<A>(target: Target.Target<A>, row: A): Promise<void> {
    return this.run(this.flow.write(target, row))
  }

  writeAll<A>(target: Target.Target<A>, rows: Iterable<A>): Promise<ReadonlyArray<BatchFailureOf<A>>> {
    return this.run(this.flow.writeAll(target, rows))
  }

  flush(): Promise<void> {
    return this.run(this.flow.flush)
  }

  stats(): BatchFlow.Stats {
    return this.runSync(this.flow.stats)
  }

  onFailure(callback: FailureCallback): () => void {
    this.callbacks.add(callback)
    if (this.reader === undefined) this.reader = this.runFork(this.readFailures())
    return () => {
      this.callbacks.delete(callback)
    }
  }

  /**
   * The one reader of `failures`, started by the first `onFailure`: failures reported before it
   * wait in the stream's buffer (up to `failureBufferSize`, further ones dropped and counted).
   * Each failure goes to every callback registered at that moment; a callback that throws or
   * rejects is logged and changes nothing for the others or for the flow. The reader waits for
   * asynchronous callbacks before the next failure, so a slow callback slows only this reader: the
   * engine never waits for it (the stream's buffer is bounded).
   */
  private readFailures(): Effect.Effect<void> {
    return Stream.runForEach(this.flow.failures, (failure) =>
      Effect.promise(() =>
        Promise.all(Array.from(this.callbacks, (callback) => this.call(callback, failure)))
      )
    )
  }

  private call(callback: FailureCallback, failure: BatchFailure): Promise<void> {
    const logged = (error: unknown) =>
      this.runExit(
        Effect.logError(
          `an onFailure callback failed for a BatchFailure of target "${failure.target}"; the flow goes on`,
          Cause.die(error)
        )
      ).then(() => undefined)
    try {
      const result = callback(failure)
      return result instanceof Promise ? result.then(() => undefined, logged) : resolved
    } catch (error) {
      return logged(error)
    }
  }

  close(): Promise<void> {
    if (this.closed === undefined) {
      this.closing = true
      const reader = this.reader
      this.closed = this.run(
        this.flow.close.pipe(
          Effect.zipRight(
            reader === undefined
              ? Effect.void
              : Effect.ignore(Effect.timeout(Fiber.join(reader), callbackGrace))
          ),
          Effect.ensuring(Scope.close(this.scope, Exit.void))
        )
      )
    }
    return this.closed
  }
}

/**
 * Builds the flow's layer in a new scope (closed again if building fails) and wraps the flow.
 * Rejects with the error that failed the layer (`BatchFlowConfigError`, a connection error).
 *
 * @internal
 */
export const make = async (layer: FlowLayer): Promise<Flow> => {
  const exit = await Effect.runPromiseExit(
    Effect.gen(function* () {
      const scope = yield* Scope.make()
      const context = yield* Layer.buildWithScope(layer, scope).pipe(
        Effect.onError((cause) => Scope.close(scope, Exit.failCause(cause)))
      )
      const runtime = yield* Effect.runtime<never>()
      return new PromiseFlow(Context.get(context, BatchFlow.BatchFlow), scope, runtime)
    })
  )
  if (exit._tag === "Failure") throw errorOf(exit.cause)
  return exit.value
}
