/**
 * The live progress of a bench run: one line redrawn in place on a TTY (rows committed, rows/s,
 * buffer depth, in-flight groups), plain periodic lines otherwise. It also samples the process RSS,
 * so every run knows its own peak. Written to stderr: stdout keeps only the results.
 *
 * @since 0.1.0
 */
import { formatCount, formatRate } from "./format.js"

/**
 * What a run reports to the progress line.
 *
 * @since 0.1.0
 * @category models
 */
export interface Snapshot {
  readonly committed: number
  /** Rows buffered, not yet taken by a flush (BatchFlow runs only). */
  readonly buffered?: number | undefined
  /** Groups being written (BatchFlow runs only). */
  readonly inFlight?: number | undefined
}

/**
 * @since 0.1.0
 * @category models
 */
export interface Progress {
  /** Stops the ticker (once), clears the line, and returns the peak RSS sampled during the run (MiB). */
  readonly stop: () => number
}

/**
 * Where progress goes and how often.
 *
 * @since 0.1.0
 * @category models
 */
export interface ProgressOptions {
  readonly stream: NodeJS.WriteStream
  /** Redraw in place (TTY) or print plain lines. Default: whether the stream is a TTY. */
  readonly tty?: boolean | undefined
  /** Milliseconds between plain lines. Default 2,000. */
  readonly plainEvery?: number | undefined
}

const TICK_MILLIS = 100

/**
 * Starts the ticker for one run of `total` rows. `sample` is called on every tick.
 *
 * @since 0.1.0
 * @category constructors
 */
export const start = (
  label: string,
  total: number,
  sample: () => Snapshot,
  options: ProgressOptions
): Progress => {
  const tty = options.tty ?? options.stream.isTTY === true
  const plainEvery = options.plainEvery ?? 2_000
  const began = performance.now()
  let peakRss = process.memoryUsage.rss()
  let lastAt = began
  let lastCommitted = 0
  let lastPrinted = began
  let rate = 0
  let ticks = 0
  let drawn = false
  const line = (now: number) => {
    const snap = sample()
    const dt = (now - lastAt) / 1000
    if (dt > 0) {
      const instant = (snap.committed - lastCommitted) / dt
      rate = ticks === 0 ? instant : rate * 0.6 + instant * 0.4
    }
    lastAt = now
    lastCommitted = snap.committed
    ticks++
    const percent = total > 0 ? Math.min(100, Math.floor((snap.committed / total) * 100)) : 100
    const parts = [
      `${label}: ${formatCount(snap.committed)} / ${formatCount(total)} rows committed (${percent} %)`,
      formatRate(rate)
    ]
    if (snap.buffered !== undefined) parts.push(`buffer ${formatCount(snap.buffered)}`)
    if (snap.inFlight !== undefined) parts.push(`in flight ${snap.inFlight}`)
    parts.push(`${((now - began) / 1000).toFixed(1)} s`)
    return parts.join(" · ")
  }
  const timer = setInterval(() => {
    const rss = process.memoryUsage.rss()
    if (rss > peakRss) peakRss = rss
    const now = performance.now()
    if (tty) {
      const text = line(now)
      const width = options.stream.columns ?? 0
      options.stream.write(`\r\x1b[2K${width > 1 && text.length >= width ? text.slice(0, width - 1) : text}`)
      drawn = true
    } else if (now - lastPrinted >= plainEvery) {
      lastPrinted = now
      options.stream.write(`${line(now)}\n`)
    } else {
      line(now)
    }
  }, TICK_MILLIS)
  timer.unref()
  let stopped = false
  return {
    stop: () => {
      if (!stopped) {
        stopped = true
        clearInterval(timer)
        const rss = process.memoryUsage.rss()
        if (rss > peakRss) peakRss = rss
        if (drawn) options.stream.write("\r\x1b[2K")
      }
      return peakRss / (1024 * 1024)
    }
  }
}
