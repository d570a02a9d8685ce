/**
 * Values on their way to a driver: per-dialect conversion, PostgreSQL's JSON form, and the size
 * estimate that splits a batch into statements.
 */
import type { ColumnKind, Dialect } from "./table.js"

type Row = Record<string, unknown>

const hex = (bytes: Uint8Array): string =>
  Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("hex")

/**
 * A value as the dialect's driver takes it (for the `values` forms). Arrays go to node-postgres as
 * they are (it writes them as array literals, for array columns); to the others as JSON text.
 *
 * @internal
 */
export const toDriver = (dialect: Dialect, value: unknown, kind?: ColumnKind): unknown => {
  if (kind === "isoDate" && dialect === "mysql" && typeof value === "string") return new Date(value)
  switch (typeof value) {
    case "undefined":
      return null
    case "boolean":
      return dialect === "sqlite" ? (value ? 1 : 0) : value
    case "bigint":
      return dialect === "sqlite" ? value : value.toString()
    case "object":
      if (value === null) return null
      if (value instanceof Date) return dialect === "sqlite" ? value.toISOString() : value
      if (value instanceof Uint8Array) {
        return Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength)
      }
      if (dialect === "pg" && Array.isArray(value)) return value
      return JSON.stringify(value)
    default:
      return value
  }
}

// ---------------------------------------------------------------- PostgreSQL array literals

const needsEscape = /["\\]/
const escaped = /["\\]/g

/** A double-quoted array element: quotes and backslashes escaped; `NULL`, `""`, braces, commas and spaces stay text. */
const quoted = (text: string): string =>
  needsEscape.test(text) ? `"${text.replace(escaped, "\\$&")}"` : `"${text}"`

/**
 * One value as an element of a PostgreSQL array literal, in the text form the column type's input
 * function reads (the same text the JSON form hands it): numbers and bigints as digits, booleans as
 * `true`/`false`, dates as ISO-8601, bytes as bytea hex, other objects as JSON; strings always
 * quoted, so that `NULL`, `""` and spaces stay strings. For json/jsonb columns every value is JSON.
 */
const arrayElement = (value: unknown, json: boolean): string => {
  if (value === null || value === undefined) return "NULL"
  if (json) return quoted(JSON.stringify(value, jsonReplacerValue))
  switch (typeof value) {
    case "number":
      return String(value)
    case "string":
      return quoted(value)
    case "bigint":
      return value.toString()
    case "boolean":
      return value ? "true" : "false"
    default:
      if (value instanceof Date) return quoted(value.toISOString())
      if (value instanceof Uint8Array) return `"\\\\x${hex(value)}"`
      return quoted(JSON.stringify(value, jsonReplacerValue))
  }
}

/**
 * The `unnest` form's parameters: one text array literal per column (`{1,2,NULL}`,
 * `{"a","b \\"c"}`), built here rather than by node-postgres (whose array encoding allocates
 * ~1 KB per row).
 *
 * A column of numbers only, or of strings that need no escaping, is one `join` of its values: one
 * array and the literal itself, where appending value by value left two intermediate strings per
 * value for the collector (a flow of W1 rows into PostgreSQL went from 127 to 110 scavenges per
 * 1.4 million rows: see docs/development/architecture.md). Other columns have each value written as
 * an element first.
 *
 * @internal
 */
export const arrayLiterals = (
  columns: ReadonlyArray<string>,
  jsonColumns: ReadonlyArray<boolean>,
  rows: ReadonlyArray<unknown>
): Array<string> => {
  const out: Array<string> = new Array(columns.length)
  const n = rows.length
  const values: Array<unknown> = new Array(n)
  for (let c = 0; c < columns.length; c++) {
    const column = columns[c]!
    const json = jsonColumns[c] === true
    let numbers = !json
    let plainStrings = !json
    for (let r = 0; r < n; r++) {
      const value = (rows[r] as Row)[column]
      values[r] = value
      if (typeof value !== "number") numbers = false
      if (typeof value !== "string" || (plainStrings && needsEscape.test(value))) plainStrings = false
    }
    if (numbers) out[c] = `{${values.join(",")}}`
    else if (plainStrings) out[c] = `{"${values.join('","')}"}`
    else {
      for (let r = 0; r < n; r++) values[r] = arrayElement(values[r], json)
      out[c] = `{${values.join(",")}}`
    }
  }
  return out
}

/** The JSON replacer for values at any depth: bytes as bytea hex text, bigints as digits. */
function jsonReplacerValue(this: unknown, key: string, value: unknown): unknown {
  const raw = (this as Record<string, unknown>)[key]
  if (raw instanceof Uint8Array) return `\\x${hex(raw)}`
  return typeof value === "bigint" ? value.toString() : value
}

/** JSON for PostgreSQL's `json` form: bytes as bytea hex text, bigints as digits. */
/** @internal */
export function jsonReplacer(this: Record<string, unknown>, key: string, value: unknown): unknown {
  const raw = this[key]
  if (raw instanceof Uint8Array) return `\\x${hex(raw)}`
  return typeof value === "bigint" ? value.toString() : value
}

/** @internal */
export const needsReplacer = (kinds: ReadonlyArray<ColumnKind>): boolean =>
  kinds.some((k) => k === "bigint" || k === "other")

/** @internal */
export const estimateValue = (value: unknown): number =>
  typeof value === "string"
    ? value.length * 3 + 4
    : value instanceof Uint8Array
      ? value.byteLength * 2 + 4
      : 24

/** Splits rows into runs that respect the row and byte limits. Returns the end index of each run. */
/** @internal */
export const split = (
  rows: ReadonlyArray<unknown>,
  columns: ReadonlyArray<string>,
  maxRows: number,
  maxBytes: number,
  fixedBytes: number
): ReadonlyArray<number> => {
  const ends: Array<number> = []
  let count = 0
  let bytes = fixedBytes
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i] as Row
    let rowBytes = 4
    for (const column of columns) rowBytes += estimateValue(row[column])
    if (count > 0 && (count >= maxRows || bytes + rowBytes > maxBytes)) {
      ends.push(i)
      count = 0
      bytes = fixedBytes
    }
    count++
    bytes += rowBytes
  }
  ends.push(rows.length)
  return ends
}

// ---------------------------------------------------------------- numeric columns

/**
 * What a numeric column keeps of a value, read from the server's catalog: integers in a range
 * (MySQL's TINYINT…BIGINT, BIT, YEAR), or a DECIMAL's fractional digits (`scale`) and integer
 * digits. A value it would round or clamp is rejected before the write (`checkNumeric`).
 *
 * @internal
 */
export interface NumericColumn {
  /** The column's name as the table declares it (the row's field). */
  readonly name: string
  /** The column's type as the server shows it, e.g. `bigint(20) unsigned`, `decimal(5,2)`. */
  readonly type: string
  /** Fractional digits kept: 0 for integer types. */
  readonly scale: number
  /** Integer digits kept (precision − scale); Infinity when only `min`/`max` bound it. */
  readonly integerDigits: number
  /** Bounds for integer types (inclusive); undefined for DECIMAL. */
  readonly min: bigint | undefined
  readonly max: bigint | undefined
  /** `min` and `max` as numbers (±Infinity when absent): exact enough for safe integers, and fast. */
  readonly minNumber: number
  readonly maxNumber: number
}

const withNumbers = (column: Omit<NumericColumn, "minNumber" | "maxNumber">): NumericColumn => ({
  ...column,
  minNumber: column.min === undefined ? Number.NEGATIVE_INFINITY : Number(column.min),
  maxNumber: column.max === undefined ? Number.POSITIVE_INFINITY : Number(column.max)
})

const integerRanges: Record<string, readonly [bigint, bigint, bigint]> = {
  // type: [signed min, signed max, unsigned max]
  tinyint: [-(2n ** 7n), 2n ** 7n - 1n, 2n ** 8n - 1n],
  smallint: [-(2n ** 15n), 2n ** 15n - 1n, 2n ** 16n - 1n],
  mediumint: [-(2n ** 23n), 2n ** 23n - 1n, 2n ** 24n - 1n],
  int: [-(2n ** 31n), 2n ** 31n - 1n, 2n ** 32n - 1n],
  integer: [-(2n ** 31n), 2n ** 31n - 1n, 2n ** 32n - 1n],
  bigint: [-(2n ** 63n), 2n ** 63n - 1n, 2n ** 64n - 1n]
}

/**
 * A MySQL/MariaDB column's numeric rule from `information_schema.COLUMNS` (`DATA_TYPE`,
 * `COLUMN_TYPE`, `NUMERIC_PRECISION`, `NUMERIC_SCALE`); `undefined` for columns that round nothing a
 * JavaScript value can carry (text, dates, plain FLOAT/DOUBLE…).
 *
 * @internal
 */
export const mysqlNumericColumn = (
  name: string,
  dataType: string,
  columnType: string,
  precision: number | null,
  scale: number | null
): NumericColumn | undefined => {
  const data = dataType.toLowerCase()
  const type = columnType.toLowerCase()
  const unsigned = type.includes("unsigned")
  const range = integerRanges[data]
  if (range !== undefined) {
    return withNumbers({
      name,
      type,
      scale: 0,
      integerDigits: Number.POSITIVE_INFINITY,
      min: unsigned ? 0n : range[0],
      max: unsigned ? range[2] : range[1]
    })
  }
  if (data === "bit") {
    const bits = precision ?? 1
    return withNumbers({
      name,
      type,
      scale: 0,
      integerDigits: Number.POSITIVE_INFINITY,
      min: 0n,
      max: 2n ** BigInt(bits) - 1n
    })
  }
  if (data === "year") {
    return withNumbers({
      name,
      type,
      scale: 0,
      integerDigits: Number.POSITIVE_INFINITY,
      min: undefined,
      max: undefined
    })
  }
  // DECIMAL(p, s), and FLOAT(p, s) / DOUBLE(p, s) declared with a scale (MariaDB rounds those to it).
  const withScale = data === "decimal" || data === "numeric" || data === "float" || data === "double"
  if (withScale && scale !== null && (data === "decimal" || data === "numeric" || /\(\d+,\d+\)/.test(type))) {
    return withNumbers({
      name,
      type,
      scale,
      integerDigits:
        data === "decimal" || data === "numeric" ? (precision ?? 10) - scale : Number.POSITIVE_INFINITY,
      min: unsigned ? 0n : undefined,
      max: undefined
    })
  }
  return undefined
}

/**
 * A PostgreSQL column's numeric rule from `format_type()`: only `numeric(p, s)`, which PostgreSQL
 * rounds to its scale (its integer types reject a fractional value themselves, SQLSTATE 22P02).
 *
 * @internal
 */
export const pgNumericColumn = (name: string, formatted: string): NumericColumn | undefined => {
  const found = /^numeric\((\d+),(\d+)\)$/.exec(formatted)
  if (found === null) return undefined
  const precision = Number(found[1])
  const scale = Number(found[2])
  return withNumbers({
    name,
    type: formatted,
    scale,
    integerDigits: precision - scale,
    min: undefined,
    max: undefined
  })
}

const numberText = /^\s*([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?\s*$/

/**
 * A decimal text's digits: integer digits (without leading zeros), fractional digits (without
 * trailing zeros), and the integer part; `undefined` when the text is not a number.
 */
const digitsOf = (
  text: string
): { readonly negative: boolean; readonly integer: string; readonly fraction: string } | undefined => {
  const m = numberText.exec(text)
  if (m === null) return undefined
  let integer = m[2] ?? ""
  let fraction = m[3] ?? ""
  if (integer === "" && fraction === "") return undefined
  const exponent = m[4] === undefined ? 0 : Number(m[4])
  if (exponent > 0) {
    const moved = fraction.slice(0, exponent).padEnd(exponent, "0")
    integer += moved
    fraction = fraction.slice(exponent)
  } else if (exponent < 0) {
    const moved = integer.slice(Math.max(0, integer.length + exponent)).padStart(-exponent, "0")
    integer = integer.slice(0, Math.max(0, integer.length + exponent))
    fraction = moved + fraction
  }
  integer = integer.replace(/^0+/, "")
  fraction = fraction.replace(/0+$/, "")
  return { negative: m[1] === "-", integer, fraction }
}

/**
 * Why the column would not keep `value` exactly (it would round or clamp it), or `undefined` when it
 * would, or when the value is not a number (or numeric text) at all: the server decides then.
 *
 * @internal
 */
export interface NumericProblem {
  /** `fraction`: not an integer for an integer column; `scale`: too many fractional digits; `range`: does not fit. */
  readonly problem: "fraction" | "scale" | "range"
  readonly detail: string
}

/** @internal */
export const checkNumeric = (column: NumericColumn, value: unknown): NumericProblem | undefined => {
  let text: string
  switch (typeof value) {
    case "number":
      if (Number.isSafeInteger(value)) {
        if (value < column.minNumber || value > column.maxNumber) return outOfRange(column)
        if (column.integerDigits < 16 && Math.abs(value) >= 10 ** column.integerDigits)
          return tooManyDigits(column)
        return undefined
      }
      if (!Number.isFinite(value)) return undefined
      text = String(value)
      break
    case "bigint":
      text = value.toString()
      break
    case "string":
      text = value
      break
    default:
      return undefined
  }
  const digits = digitsOf(text)
  if (digits === undefined) return undefined
  if (digits.fraction.length > column.scale) {
    return column.scale === 0
      ? {
          problem: "fraction",
          detail: `${text} is not an integer, and the ${column.type} column would store it rounded`
        }
      : {
          problem: "scale",
          detail: `${text} has ${digits.fraction.length} fractional digits, and the ${column.type} column would round it to ${column.scale}`
        }
  }
  if (digits.integer.length > column.integerDigits) return tooManyDigits(column)
  if (column.min !== undefined || column.max !== undefined) {
    const whole = BigInt(digits.integer === "" ? "0" : digits.integer) * (digits.negative ? -1n : 1n)
    if (column.min !== undefined && whole < column.min) return outOfRange(column)
    if (column.max !== undefined && whole > column.max) return outOfRange(column)
  }
  return undefined
}

const outOfRange = (column: NumericColumn): NumericProblem => ({
  problem: "range",
  detail: `the value is outside the ${column.type} column's range (${column.min ?? "…"} to ${column.max ?? "…"})`
})

const tooManyDigits = (column: NumericColumn): NumericProblem => ({
  problem: "range",
  detail: `the value has more than the ${column.integerDigits} integer digits the ${column.type} column keeps`
})
