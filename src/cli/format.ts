/**
 * Number formatting of the bench output (locale-independent, so reports compare across machines).
 *
 * @since 0.1.0
 */

/**
 * `1234567` → `1,234,567`.
 *
 * @since 0.1.0
 * @category formatting
 */
export const formatCount = (n: number): string => {
  const rounded = Math.round(n)
  const sign = rounded < 0 ? "-" : ""
  return sign + String(Math.abs(rounded)).replace(/\B(?=(\d{3})+(?!\d))/g, ",")
}

/**
 * A rate with an SI suffix: `245 k rows/s`, `1.08 M rows/s`.
 *
 * @since 0.1.0
 * @category formatting
 */
export const formatRate = (perSecond: number, unit = "rows/s"): string => `${formatSi(perSecond)} ${unit}`

/**
 * `1080000` → `1.08 M`, `245300` → `245 k`, `950` → `950`.
 *
 * @since 0.1.0
 * @category formatting
 */
export const formatSi = (n: number): string => {
  if (!Number.isFinite(n)) return "–"
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)} M`
  if (n >= 1e3) return `${(n / 1e3).toFixed(0)} k`
  return n.toFixed(0)
}

/**
 * Milliseconds with a precision that suits their size: `0.42 ms`, `12.3 ms`, `1,234 ms`.
 *
 * @since 0.1.0
 * @category formatting
 */
export const formatMillis = (ms: number): string => {
  if (!Number.isFinite(ms)) return "–"
  if (ms < 1) return `${ms.toFixed(2)} ms`
  if (ms < 100) return `${ms.toFixed(1)} ms`
  return `${formatCount(ms)} ms`
}

/**
 * `0.6234` → `0.62×`.
 *
 * @since 0.1.0
 * @category formatting
 */
export const formatRatio = (r: number): string => (Number.isFinite(r) ? `${r.toFixed(2)}×` : "–")

/**
 * The median of the values (`NaN` when there are none).
 *
 * @since 0.1.0
 * @category statistics
 */
export const median = (xs: ReadonlyArray<number>): number => {
  if (xs.length === 0) return Number.NaN
  const s = [...xs].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

/**
 * The q-quantile (0–1) of the values by the nearest-rank method (`NaN` when there are none).
 *
 * @since 0.1.0
 * @category statistics
 */
export const quantile = (sorted: ReadonlyArray<number>, q: number): number => {
  if (sorted.length === 0) return Number.NaN
  const rank = Math.max(1, Math.ceil(q * sorted.length))
  return sorted[Math.min(sorted.length, rank) - 1]!
}

/**
 * Hides the password of a connection URL: `postgres://u:secret@h/db` → `postgres://u:***@h/db`.
 *
 * @since 0.1.0
 * @category formatting
 */
export const redactUrl = (url: string): string => {
  try {
    const parsed = new URL(url)
    if (parsed.password !== "") parsed.password = "***"
    return parsed.toString()
  } catch {
    return url
  }
}
