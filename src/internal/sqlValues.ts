/**
 * Values on their way to a driver: per-dialect conversion, PostgreSQL's JSON form, and the size
 * estimate that splits a batch into statements.
 */
import type { Dialect } from "./sqlBuild.js"
import type { ColumnKind } from "./sqlTable.js"

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

const estimateValue = (value: unknown): number =>
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
