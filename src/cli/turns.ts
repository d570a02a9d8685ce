/**
 * Gives the event loop a turn when a run has starved it.
 *
 * A run whose executor never waits for I/O (SQLite's synchronous driver, W0's counting executor)
 * keeps Node's microtask queue busy from the first submit to the last commit: timers, signals and
 * I/O callbacks wait until the run ends, so the progress line would freeze and Ctrl-C would only act
 * at the end. The bench's producers (and the baselines' batch loops) therefore check, every few
 * hundred rows, whether a heartbeat timer has run in the last `maxStarveMillis`; if not, they wait
 * for one `setImmediate` (all of them the same one), which lets the loop run its timers and signal
 * handlers. With a driver that does I/O the heartbeat keeps running and nobody waits. The cost is
 * one event-loop turn per `maxStarveMillis` of starvation.
 *
 * @since 0.1.0
 */

/**
 * @since 0.1.0
 * @category models
 */
export interface Turns {
  /** Whether the heartbeat has not run for `maxStarveMillis`. */
  readonly starved: () => boolean
  /** Resolves after one turn of the event loop (shared by every caller waiting at the same time). */
  readonly turn: () => Promise<void>
  readonly stop: () => void
}

/**
 * @since 0.1.0
 * @category constructors
 */
export const start = (maxStarveMillis = 200): Turns => {
  let last = performance.now()
  let pending: Promise<void> | undefined
  const heartbeat = setInterval(
    () => {
      last = performance.now()
    },
    Math.max(10, Math.floor(maxStarveMillis / 4))
  )
  heartbeat.unref()
  return {
    starved: () => performance.now() - last > maxStarveMillis,
    turn: () => {
      if (pending === undefined) {
        pending = new Promise<void>((resolve) =>
          setImmediate(() => {
            pending = undefined
            last = performance.now()
            resolve()
          })
        )
      }
      return pending
    },
    stop: () => clearInterval(heartbeat)
  }
}
