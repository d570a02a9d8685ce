/**
 * A one-shot completion: set once with an `Exit`, awaited by any number of fibers. What the engine
 * uses `Deferred` for, without its cost: in effect 3.22 `Deferred.unsafeMake` copies the whole effect
 * prototype into every new deferred (≈ 6 µs each here, and ≈ 12 µs with its completion and await),
 * which made each `write` ack and each batch's bookkeeping signals a measurable part of the engine's
 * time. Making one of these is one small object; awaiting it is one `Effect.async`.
 */
import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"

/** @internal */
export class Completion<A = void, E = never> {
  private exit: Exit.Exit<A, E> | undefined = undefined
  private waiters: Array<(exit: Exit.Exit<A, E>) => void> | undefined = undefined

  get isDone(): boolean {
    return this.exit !== undefined
  }

  /** Completes with `exit` and resumes every waiter; later calls do nothing. */
  unsafeDone(exit: Exit.Exit<A, E>): void {
    if (this.exit !== undefined) return
    this.exit = exit
    const waiters = this.waiters
    if (waiters === undefined) return
    this.waiters = undefined
    for (const resume of waiters) resume(exit)
  }

  /** Adds a waiter (the completion is not done yet); returns what removes it again. */
  private wait(resume: (exit: Exit.Exit<A, E>) => void): () => void {
    this.waiters ??= []
    const waiters = this.waiters
    waiters.push(resume)
    return () => {
      const at = waiters.indexOf(resume)
      if (at >= 0) waiters.splice(at, 1)
    }
  }

  /**
   * Waits for the completion, at most `millis` (a plain timer: only under Effect's live clock).
   * Succeeds either way; interruptible.
   */
  awaitAtMost(millis: number): Effect.Effect<void> {
    return Effect.async<void>((resume) => {
      if (this.exit !== undefined) return resume(Effect.void)
      const remove = this.wait(() => {
        clearTimeout(timer)
        resume(Effect.void)
      })
      const timer = setTimeout(() => {
        remove()
        resume(Effect.void)
      }, millis)
      return Effect.sync(() => {
        clearTimeout(timer)
        remove()
      })
    })
  }

  /** Waits for the completion and returns its exit's value or error. Interruptible. */
  get await(): Effect.Effect<A, E> {
    return Effect.suspend(() =>
      this.exit !== undefined
        ? this.exit
        : Effect.async<A, E>((resume) => {
            if (this.exit !== undefined) return resume(this.exit)
            return Effect.sync(this.wait(resume))
          })
    )
  }
}
