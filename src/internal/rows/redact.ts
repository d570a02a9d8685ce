/**
 * Keeping row values out of logs and error messages.
 *
 * A driver's message often quotes the value that broke a constraint (`Duplicate entry
 * 'alice@example.com' for key 'users.email'`, `Key (email)=(alice@example.com) already exists`), and a
 * custom executor's error may say anything. By default that text is masked before it reaches a log
 * line or a `BatchFailure.message`: quoted literals (but not the quoted names of constraints, keys,
 * columns, tables…), PostgreSQL's `(column)=(value)` details, Schema's `actual …`, and any value of
 * the failing rows that is at least 3 characters long. What stays is what helps: the error code,
 * the constraint or key name, the reason.
 *
 * With `logRowValues` the text is left as the driver wrote it, except that the values of sensitive
 * columns are replaced by `[REDACTED]`, and rows are shown with those columns replaced.
 */

/** Stands for a masked value in a message. */
export const masked = "***"

/** Stands for the value of a sensitive column. */
export const redacted = "[REDACTED]"

/** Values shorter than this are not masked by exact match: they would mangle ordinary words and numbers. */
const minMaskedLength = 3

/** How deep nested objects are walked for values (rows are flat in practice). */
const maxDepth = 6

/** @internal */
export interface Redaction {
  readonly logRowValues: boolean
  /** Whether a column (or nested field) name is sensitive. */
  readonly isSensitive: (name: string) => boolean
}

/**
 * A column is sensitive when its name, lower-cased, contains one of the entries, lower-cased: with
 * `email` in the list, `user_email` and `EmailAddress` are sensitive too.
 *
 * @internal
 */
export const make = (options: {
  readonly logRowValues: boolean
  readonly sensitiveColumns: ReadonlyArray<string>
}): Redaction => {
  const entries = options.sensitiveColumns.map((entry) => entry.toLowerCase())
  const isSensitive = (name: string): boolean => {
    const lower = name.toLowerCase()
    for (const entry of entries) if (lower.includes(entry)) return true
    return false
  }
  return { logRowValues: options.logRowValues, isSensitive }
}

/** The text of an error (or of anything a failure carries as its cause), unmasked. */
export const describe = (cause: unknown): string => {
  if (cause instanceof Error) return cause.message
  if (typeof cause === "string") return cause
  try {
    return JSON.stringify(cause, jsonReplacer) ?? String(cause)
  } catch {
    return String(cause)
  }
}

/**
 * The failure text a log line or `BatchFailure.message` carries: masked by default; with
 * `logRowValues`, as written, with the sensitive values of the rows redacted.
 *
 * @internal
 */
export const failureDetail = (redaction: Redaction, cause: unknown, rows: ReadonlyArray<unknown>): string =>
  cut(
    redaction.logRowValues
      ? redactSensitiveValues(describe(cause), rows, redaction.isSensitive)
      : maskValues(describe(cause), rows)
  )

/**
 * The masked failure text, for a `BatchFailure` built without one.
 *
 * @internal
 */
export const maskedDetail = (cause: unknown, rows: ReadonlyArray<unknown>): string =>
  cut(maskValues(describe(cause), rows))

/** A log line needs the start of a long error text (a cause shown as JSON can be a whole batch). */
const maxDetail = 4000

/** Cuts after masking, so that no literal is cut in half before it could be masked. */
const cut = (text: string): string =>
  text.length > maxDetail ? `${text.slice(0, maxDetail)}… (${text.length - maxDetail} more characters)` : text

/** The words after which a quoted name is an identifier, kept because it says where the error is. */
const identifierBefore =
  /\b(?:constraint|key|column|columns|relation|table|index|schema|database|sequence|type|function|trigger|view|field|target|command)\s*$/i

/** A quoted name followed by a colon is a label (a JSON key, say), not a value. */
const labelAfter = /^\s*:/

/**
 * A single- or double-quoted literal (`\'` and `''` escapes inside), not an apostrophe inside a word.
 * The body is bounded so that text full of unclosed quotes costs linear time, not quadratic; a
 * longer literal is left to the exact-value pass.
 */
const quoted = /(?<![\w'"\\])(['"])((?:\\.|\1\1|(?!\1)[^\\]){0,1000})\1(?![\w])/g

/** PostgreSQL's `Key (email)=(alice@example.com)`, one level of parentheses allowed in the value. */
const pgKeyValue = /(\([^()]*\))=\((?:[^()]|\([^()]*\))*\)/g

/** PostgreSQL's `Failing row contains (1, alice, null)`. */
const pgFailingRow = /(Failing row contains )\((?:[^()]|\([^()]*\))*\)/g

/** Schema's `Expected string, actual 123`: the actual value runs to the end of the line. */
const schemaActual = /(\bactual ).+$/gm

/**
 * Masks the row values in a message, keeping the rest.
 *
 * @internal
 */
export const maskValues = (text: string, rows: ReadonlyArray<unknown>): string => {
  let out = text
    .replace(pgKeyValue, `$1=(${masked})`)
    .replace(pgFailingRow, `$1(${masked})`)
    .replace(schemaActual, `$1${masked}`)
    .replace(quoted, (match, quote: string, _body: string, offset: number, whole: string) =>
      identifierBefore.test(whole.slice(Math.max(0, offset - 24), offset)) ||
      labelAfter.test(whole.slice(offset + match.length, offset + match.length + 4))
        ? match
        : `${quote}${masked}${quote}`
    )
  const values = new Set<string>()
  for (const row of rows) collectValues(row, values, 0)
  for (const value of byLengthDescending(values)) {
    if (value.length >= minMaskedLength && out.includes(value)) out = out.split(value).join(masked)
  }
  return out
}

/**
 * Replaces the values of the rows' sensitive columns in a message, leaving everything else.
 *
 * @internal
 */
export const redactSensitiveValues = (
  text: string,
  rows: ReadonlyArray<unknown>,
  isSensitive: (name: string) => boolean
): string => {
  const values = new Set<string>()
  for (const row of rows) collectSensitive(row, values, 0, isSensitive)
  let out = text
  for (const value of byLengthDescending(values)) {
    if (value.length === 0 || !out.includes(value)) continue
    if (value.length >= minMaskedLength) {
      out = out.split(value).join(redacted)
      continue
    }
    // A short value is replaced only where the driver delimits it, not inside other words.
    for (const [open, close] of [
      ["'", "'"],
      ['"', '"'],
      ["(", ")"]
    ] as const) {
      out = out.split(`${open}${value}${close}`).join(`${open}${redacted}${close}`)
    }
  }
  return out
}

/**
 * A copy of a row with the values of sensitive columns (at any depth) replaced by `[REDACTED]`.
 *
 * @internal
 */
export const redactRow = (row: unknown, isSensitive: (name: string) => boolean): unknown =>
  redactValue(row, isSensitive, 0, new Set())

/**
 * A value as text for a log line or an error detail: strings quoted, objects as JSON with their
 * sensitive fields redacted, long text cut.
 *
 * @internal
 */
export const formatValue = (value: unknown, isSensitive: (name: string) => boolean): string => {
  let text: string
  if (typeof value === "number" || typeof value === "boolean" || value === undefined) text = String(value)
  else if (typeof value === "bigint") text = `${value}n`
  else if (typeof value === "symbol" || typeof value === "function") text = `a ${typeof value}`
  else {
    try {
      text = JSON.stringify(redactRow(value, isSensitive), jsonReplacer) ?? String(value)
    } catch {
      text = String(value)
    }
  }
  return text.length > maxFormatted ? `${text.slice(0, maxFormatted)}…` : text
}

const maxFormatted = 500

/**
 * Up to `max` rows as JSON, sensitive columns redacted, for the final-failure log line.
 *
 * @internal
 */
export const formatRows = (
  rows: ReadonlyArray<unknown>,
  isSensitive: (name: string) => boolean,
  max: number
): string => {
  const shown = rows.slice(0, max).map((row) => formatValue(row, isSensitive))
  const label = rows.length > max ? `First ${max} of ${rows.length} rows` : rows.length === 1 ? "Row" : "Rows"
  return `${label}: ${shown.join(", ")}`
}

const byLengthDescending = (values: Set<string>): Array<string> =>
  Array.from(values).sort((a, b) => b.length - a.length)

const isRecord = (u: unknown): u is Record<string, unknown> =>
  typeof u === "object" && u !== null && !ArrayBuffer.isView(u) && !(u instanceof Date)

/** Adds the text forms of the primitive values under `value` to `out`. */
const collectValues = (value: unknown, out: Set<string>, depth: number): void => {
  const leaf = leafText(value)
  if (leaf !== undefined) {
    out.add(leaf)
    return
  }
  if (depth >= maxDepth) return
  if (Array.isArray(value)) for (const item of value) collectValues(item, out, depth + 1)
  else if (isRecord(value)) for (const key of Object.keys(value)) collectValues(value[key], out, depth + 1)
}

const collectSensitive = (
  value: unknown,
  out: Set<string>,
  depth: number,
  isSensitive: (name: string) => boolean
): void => {
  if (depth >= maxDepth) return
  if (Array.isArray(value)) {
    for (const item of value) collectSensitive(item, out, depth + 1, isSensitive)
  } else if (isRecord(value)) {
    for (const key of Object.keys(value)) {
      if (isSensitive(key)) collectValues(value[key], out, depth + 1)
      else collectSensitive(value[key], out, depth + 1, isSensitive)
    }
  }
}

const leafText = (value: unknown): string | undefined => {
  switch (typeof value) {
    case "string":
      return value
    case "number":
      return Number.isFinite(value) ? String(value) : undefined
    case "bigint":
      return String(value)
    default:
      return value instanceof Date && !Number.isNaN(value.getTime()) ? value.toISOString() : undefined
  }
}

const redactValue = (
  value: unknown,
  isSensitive: (name: string) => boolean,
  depth: number,
  seen: Set<unknown>
): unknown => {
  if (typeof value !== "object" || value === null || value instanceof Date) return value
  if (ArrayBuffer.isView(value)) return `<${value.byteLength} bytes>`
  if (seen.has(value) || depth >= maxDepth) return "[…]"
  seen.add(value)
  try {
    if (Array.isArray(value)) return value.map((item) => redactValue(item, isSensitive, depth + 1, seen))
    const out: Record<string, unknown> = {}
    for (const key of Object.keys(value)) {
      const field = (value as Record<string, unknown>)[key]
      out[key] = isSensitive(key) ? redacted : redactValue(field, isSensitive, depth + 1, seen)
    }
    return out
  } finally {
    seen.delete(value)
  }
}

const jsonReplacer = (_key: string, value: unknown): unknown =>
  typeof value === "bigint" ? value.toString() : value
