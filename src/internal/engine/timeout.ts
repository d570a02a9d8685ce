/**
 * Running one attempt so that the engine never waits on a driver longer than it said it would, and
 * never forgets what the driver did.
 *
 * The attempt starts at once in its own fiber (`Runtime.runFork` starts synchronously). If it has
 * already finished, its exit is used directly: an executor that completes synchronously (an
 * in-memory sink, better-sqlite3) pays for no timer and no scheduling (see
 * docs/development/architecture.md). Otherwise the caller waits for the first of:
 *
 * - the attempt's exit: its real result;
 * - the deadline, `timeout` and then `grace`: the attempt is *abandoned*. At `timeout` the database
 *   normally ends the statement itself (the SQL executors give it the same deadline) and the answer
 *   arrives within the grace; only an attempt that gives no answer at all is abandoned, failing the
 *   caller with `onTimeout()`;
 * - the caller's interruption (the close deadline): the attempt is abandoned too.
 *
 * An abandoned attempt is not interrupted. Interrupting a driver call throws its answer away (and
 * @effect/sql-pg's cancel needs a free pool connection, so the statement may commit regardless):
 * the attempt runs on, and when it ends its exit goes to `onLate`, so the real outcome is recorded.
 * Nothing here keeps the process alive: the timer is interrupted as soon as the wait ends.
 */
import * as Clock from "effect/Clock"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import type * as Exit from "effect/Exit"
import * as Runtime from "effect/Runtime"

/** @internal */
export interface Deadline<E2> {
  /** The attempt's deadline; infinite for none. */
  readonly timeout: Duration.Duration
  /** How long past `timeout` the attempt may still answer before it is abandoned. */
  readonly grace: Duration.Duration
  readonly onTimeout: () => E2
  /**
   * Whether the deadline may be a plain `setTimeout` (the clock is Effect's live one): one Node timer
   * instead of a timer fiber per attempt. Under a `TestClock` the fiber's sleep is what the test moves.
   */
  readonly plainTimer: boolean
}

const LiveClock = Clock.make().constructor

/** @internal Whether `clock` is Effect's live clock (not a `TestClock` or another of the user's). */
export const isLiveClock = (clock: Clock.Clock): boolean => clock.constructor === LiveClock

/** @internal */
export const runAttempt = <A, E, E2>(
  self: Effect.Effect<A, E>,
  deadline: Deadline<E2>,
  onLate: (exit: Exit.Exit<A, E>) => Effect.Effect<void>,
  /**
   * `true` just before the attempt starts; `false` once the caller stops waiting for it (its answer,
   * the deadline or the caller's interruption), before the caller resumes.
   */
  running: (running: boolean) => void,
  /**
   * The runtime to start the attempt with, when the caller's own does not matter (no spans to
   * parent): saves reading it per attempt. By default, the caller's.
   */
  given?: Runtime.Runtime<never>
): Effect.Effect<A, E | E2> => {
  const start = (runtime: Runtime.Runtime<never>) =>
    Effect.suspend(() => {
      running(true)
      const attempt = Runtime.runFork(runtime)(Effect.interruptible(self))
      const early = attempt.unsafePoll()
      if (early !== null) {
        running(false)
        return early
      }
      return Effect.async<A, E | E2>((resume) => {
        // Whether the caller has stopped waiting (deadline or interruption): the exit is then late.
        let abandoned = false
        let stopTimer: (() => void) | undefined
        attempt.addObserver((exit) => {
          if (abandoned) {
            Runtime.runFork(runtime)(onLate(exit))
            return
          }
          abandoned = true
          stopTimer?.()
          running(false)
          resume(exit)
        })
        if (Duration.isFinite(deadline.timeout)) {
          const expire = () => {
            if (abandoned) return
            abandoned = true
            running(false)
            resume(Effect.fail(deadline.onTimeout()))
          }
          const after = Duration.sum(deadline.timeout, deadline.grace)
          if (deadline.plainTimer) {
            const handle = setTimeout(expire, Duration.toMillis(after))
            stopTimer = () => clearTimeout(handle)
          } else {
            const timer = Runtime.runFork(runtime)(Effect.zipRight(Effect.sleep(after), Effect.sync(expire)))
            stopTimer = () => timer.unsafeInterruptAsFork(timer.id())
          }
        }
        return Effect.sync(() => {
          if (abandoned) return
          abandoned = true
          stopTimer?.()
          running(false)
        })
      })
    })
  return given === undefined ? Effect.flatMap(Effect.runtime<never>(), start) : start(given)
}
