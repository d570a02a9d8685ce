/**
 * A per-attempt timeout that costs nothing when the attempt finishes synchronously.
 *
 * `Effect.timeoutFail` races two forked fibers and then awaits the loser's interruption: every
 * attempt goes through the scheduler two or three times, even for an executor that completes at
 * once (an in-memory sink, better-sqlite3). Under load that left each worker waiting behind the
 * producers after every batch, the buffer sat full, and keeping those rows alive made garbage
 * collection the biggest cost of W0 (see docs/development/architecture.md).
 *
 * Here the attempt starts at once in its own fiber (`Runtime.runFork` starts synchronously). If it
 * has already finished, its exit is used directly. Otherwise a timer fiber is started under the same
 * runtime (so `TestClock` drives it), and whichever ends first decides: the attempt's exit, or an
 * interruption of the attempt followed by the timeout error. Interrupting the caller interrupts both.
 */
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Runtime from "effect/Runtime"

/** @internal */
export const timeoutFail = <A, E, E2>(
  self: Effect.Effect<A, E>,
  duration: Duration.Duration,
  onTimeout: () => E2
): Effect.Effect<A, E | E2> =>
  Effect.flatMap(Effect.runtime<never>(), (runtime) =>
    Effect.uninterruptibleMask((restore) => {
      const attempt = Runtime.runFork(runtime)(Effect.interruptible(self))
      const early = attempt.unsafePoll()
      if (early !== null) return early
      let timer: Fiber.RuntimeFiber<void> | undefined
      const wait = Effect.async<A, E | E2>((resume) => {
        let settled = false
        timer = Runtime.runFork(runtime)(
          Effect.zipRight(
            Effect.sleep(duration),
            Effect.suspend(() => {
              if (settled) return Effect.void
              settled = true
              return Effect.zipRight(
                Fiber.interrupt(attempt),
                Effect.sync(() => resume(Effect.fail(onTimeout())))
              )
            })
          )
        )
        attempt.addObserver((exit) => {
          if (settled) return
          settled = true
          timer?.unsafeInterruptAsFork(timer.id())
          resume(exit)
        })
      })
      return restore(wait).pipe(
        Effect.onInterrupt(() =>
          Effect.zipRight(
            timer === undefined ? Effect.void : Fiber.interrupt(timer),
            Fiber.interrupt(attempt)
          )
        )
      )
    })
  )
