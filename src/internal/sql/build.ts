/**
 * Statement building, pure: in-batch dedupe by the conflict key, encoding, per-dialect value
 * conversion, splitting to respect the statement limits, and the SQL text. `Sql.preview` and the
 * executor both call `plan`, so what a preview shows is what runs.
 */
import * as Either from "effect/Either"
import type * as Table from "../../Table.js"
import { RowEncodeError } from "./errors.js"
import { type Dialect, type Internals, internals } from "./table.js"

export type { Dialect }

import { arrayLiterals, estimateValue, jsonReplacer, needsReplacer, split, toDriver } from "./values.js"

/**
 * PostgreSQL statement forms: `json` sends the whole batch as one JSON parameter read with
 * `json_populate_recordset(NULL::table, $1)` (the table's own column types convert the values; one
 * short statement text whatever the batch size); `values` is the classic multi-row `VALUES` list.
 *
 * @internal
 */
export type PgForm = "json" | "values" | "unnest"

/** @internal */
export interface BuildOptions {
  readonly pgForm: PgForm
  /**
   * For `unnest`: each column's type without modifiers (`format_type(atttypid, NULL)`), in the
   * table's column order, read from the catalog by the executor. Without them (`Sql.preview`), or
   * when a column is an array (unnest would flatten it), the JSON form is used instead.
   */
  readonly pgTypes?: ReadonlyArray<string> | undefined
  /** Bind parameters per statement at most. */
  readonly maxParams: number
  /** Estimated statement size (SQL text plus values) at most, in bytes; a single bigger row still goes alone. */
  readonly maxStatementBytes: number
}

/** @internal */
export interface StatementOptions {
  readonly pgForm?: PgForm | undefined
  readonly maxParams?: number | undefined
  readonly maxStatementBytes?: number | undefined
  /** SQLite: run statements on the client's better-sqlite3 `Database` directly (sqliteDirect.ts). */
  readonly direct?: boolean | undefined
}

/** @internal */
export const limits: Readonly<
  Record<Dialect, { readonly maxParams: number; readonly maxStatementBytes: number }>
> = {
  pg: { maxParams: 65_535, maxStatementBytes: 64 * 1024 * 1024 },
  mysql: { maxParams: 65_535, maxStatementBytes: 4 * 1024 * 1024 },
  sqlite: { maxParams: 32_766, maxStatementBytes: Number.POSITIVE_INFINITY }
}

/**
 * PostgreSQL's default statement form: `unnest` (array literals built by the executor), which
 * measured 0.79–0.81× of raw `unnest` in the bench against 0.60–0.64× for `json` (same runs, see the
 * SQL guide). Tables it cannot carry (array columns) use `json`.
 *
 * @internal
 */
export const defaultPgForm: PgForm = "unnest"

/** Resolves statement options against the dialect's limits (`maxParams` can only go down). @internal */
export const buildOptions = (dialect: Dialect, options: StatementOptions = {}): BuildOptions => ({
  pgForm: options.pgForm ?? defaultPgForm,
  maxParams: Math.min(options.maxParams ?? limits[dialect].maxParams, limits[dialect].maxParams),
  maxStatementBytes: options.maxStatementBytes ?? limits[dialect].maxStatementBytes
})

/** @internal */
export interface Statement {
  readonly sql: string
  readonly params: ReadonlyArray<unknown>
  readonly rows: number
}

/** @internal */
export interface DedupeStats {
  /** Rows given. */
  readonly rowsIn: number
  /** Rows written after merging same-key rows. */
  readonly rowsOut: number
  /** Rows whose key has a NULL part: never merged. */
  readonly nullKeys: number
}

/** @internal */
export interface Plan {
  readonly statements: ReadonlyArray<Statement>
  readonly dedupe: DedupeStats
  /** The rows written: after dedupe and encoding (what the column checks look at). */
  readonly rows: ReadonlyArray<unknown>
}

type Row = Record<string, unknown>

// ---------------------------------------------------------------- dedupe

/**
 * Merges rows with the same conflict key, as if they were written one after the other: `ignore`
 * keeps the first, `replace` the last (at the first one's place), `update` the first row with the
 * `set` columns of the later ones. Keys with a NULL part never match anything.
 *
 * @internal
 */
export const dedupe = (
  table: Table.Any,
  keyOf: (row: unknown) => unknown,
  rows: ReadonlyArray<unknown>
): { readonly rows: ReadonlyArray<unknown>; readonly nullKeys: number } => {
  const mode = table.conflict._tag
  if (mode === "None" || table.key.length === 0) return { rows, nullKeys: 0 }
  if (mode === "Ignore") return dedupeIgnore(keyOf, rows)
  const out: Array<unknown> = []
  let nullKeys = 0
  const at = new Map<unknown, number>()
  for (const row of rows) {
    const key = keyOf(row)
    if (key === undefined) {
      nullKeys++
      out.push(row)
      continue
    }
    const index = at.get(key)
    if (index === undefined) {
      at.set(key, out.length)
      out.push(row)
    } else if (mode === "Replace") {
      out[index] = row
    } else {
      const merged: Row = { ...(out[index] as Row) }
      for (const column of table.updateColumns) merged[column] = (row as Row)[column]
      out[index] = merged
    }
  }
  return { rows: out.length === rows.length ? rows : out, nullKeys }
}

/**
 * `ignore`: the first row of each key is kept. Keys that keep increasing (ids, timestamps: the
 * common case) cannot repeat, so no set is built until one does not increase; the rows are copied
 * only once a duplicate is found.
 */
const dedupeIgnore = (
  keyOf: (row: unknown) => unknown,
  rows: ReadonlyArray<unknown>
): { readonly rows: ReadonlyArray<unknown>; readonly nullKeys: number } => {
  let nullKeys = 0
  let seen: Set<unknown> | undefined
  let out: Array<unknown> | undefined
  let last: number | string | undefined
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i]
    const key = keyOf(row)
    if (key === undefined) {
      nullKeys++
      out?.push(row)
      continue
    }
    if (seen === undefined) {
      if (increases(last, key)) {
        last = key as number | string
        continue
      }
      seen = new Set()
      for (let j = 0; j < i; j++) {
        const earlier = keyOf(rows[j])
        if (earlier !== undefined) seen.add(earlier)
      }
    }
    if (seen.has(key)) {
      out ??= rows.slice(0, i)
      continue
    }
    seen.add(key)
    out?.push(row)
  }
  return { rows: out ?? rows, nullKeys }
}

/** Whether `key` is a number or string greater than `last`, of the same type (the first always is). */
const increases = (last: number | string | undefined, key: unknown): boolean => {
  const type = typeof key
  if (type !== "number" && type !== "string") return false
  if (last === undefined) return !Number.isNaN(key)
  return typeof last === type && (key as number | string) > last
}

// ---------------------------------------------------------------- templates

interface Template {
  readonly dialect: Dialect
  readonly form: "json" | "values" | "unnest"
  /** For `unnest`: whether each column is json/jsonb (its values are written as JSON text). */
  readonly jsonColumns: ReadonlyArray<boolean>
  /** Everything before the row tuples (`values`), or the whole statement (`json`). */
  readonly head: string
  readonly tail: string
  readonly columns: number
  /** SQL text per row count, for the `values` form. */
  readonly texts: Map<number, string>
  fingerprint: string | undefined
}

const quote = (dialect: Dialect, name: string): string =>
  dialect === "mysql" ? `\`${name.replaceAll("`", "``")}\`` : `"${name.replaceAll('"', '""')}"`

const conflictTail = (dialect: Dialect, table: Table.Any, q: (s: string) => string): string => {
  const c = table.conflict
  const key = table.key.map(q).join(", ")
  const sets = (excluded: (col: string) => string) =>
    table.updateColumns.map((col) => `${q(col)} = ${excluded(q(col))}`).join(", ")
  switch (dialect) {
    case "pg":
      if (c._tag === "Ignore")
        return key === "" ? " ON CONFLICT DO NOTHING" : ` ON CONFLICT (${key}) DO NOTHING`
      if (c._tag === "None") return ""
      if (table.updateColumns.length === 0) return ` ON CONFLICT (${key}) DO NOTHING`
      return ` ON CONFLICT (${key}) DO UPDATE SET ${sets((col) => `EXCLUDED.${col}`)}`
    case "mysql":
      return c._tag === "Update" ? ` ON DUPLICATE KEY UPDATE ${sets((col) => `VALUES(${col})`)}` : ""
    case "sqlite":
      return c._tag === "Update"
        ? ` ON CONFLICT (${key}) DO UPDATE SET ${sets((col) => `excluded.${col}`)}`
        : ""
  }
}

const insertVerb = (dialect: Dialect, table: Table.Any): string => {
  const mode = table.conflict._tag
  if (dialect === "mysql") {
    return mode === "Ignore" ? "INSERT IGNORE INTO" : mode === "Replace" ? "REPLACE INTO" : "INSERT INTO"
  }
  if (dialect === "sqlite") {
    return mode === "Ignore"
      ? "INSERT OR IGNORE INTO"
      : mode === "Replace"
        ? "INSERT OR REPLACE INTO"
        : "INSERT INTO"
  }
  return "INSERT INTO"
}

/** Whether the `unnest` form can write a table whose column types are `types`. */
const unnestable = (types: ReadonlyArray<string> | undefined): types is ReadonlyArray<string> => {
  if (types === undefined) return false
  return types.every((type) => !type.endsWith("[]"))
}

/**
 * The cache key of an `unnest` template: made once per column-type list (the catalog keeps one per
 * table), not joined anew for every batch.
 */
const unnestIds = new WeakMap<ReadonlyArray<string>, string>()
const unnestId = (dialect: Dialect, pgTypes: ReadonlyArray<string>): string => {
  let id = unnestIds.get(pgTypes)
  if (id === undefined) {
    id = `${dialect}:unnest:${pgTypes.join(",")}`
    unnestIds.set(pgTypes, id)
  }
  return id
}

const template = (
  dialect: Dialect,
  table: Table.Any,
  own: Internals,
  pgForm: PgForm,
  pgTypes?: ReadonlyArray<string>
): Template => {
  const form =
    dialect !== "pg" ? "values" : pgForm === "unnest" ? (unnestable(pgTypes) ? "unnest" : "json") : pgForm
  const id = form === "unnest" ? unnestId(dialect, pgTypes!) : `${dialect}:${form}`
  const cached = own.templates.get(id) as Template | undefined
  if (cached !== undefined) return cached
  const q = (name: string) => quote(dialect, name)
  const name = table.path.map(q).join(".")
  const columns = table.columns.map(q).join(", ")
  const into = `${insertVerb(dialect, table)} ${name} (${columns})`
  const tail = conflictTail(dialect, table, q)
  const head =
    form === "json"
      ? `${into} SELECT ${columns} FROM json_populate_recordset(NULL::${name}, $1::json)${tail}`
      : form === "unnest"
        ? `${into} SELECT * FROM unnest(${pgTypes!.map((type, i) => `$${i + 1}::${type}[]`).join(", ")})${tail}`
        : `${into} VALUES `
  const made: Template = {
    dialect,
    form,
    jsonColumns: form === "unnest" ? pgTypes!.map((type) => type === "json" || type === "jsonb") : [],
    head,
    tail,
    columns: table.columns.length,
    texts: new Map(),
    fingerprint: undefined
  }
  own.templates.set(id, made)
  return made
}

const valuesText = (t: Template, rows: number): string => {
  const cached = t.texts.get(rows)
  if (cached !== undefined) return cached
  let sql = t.head
  if (t.dialect === "pg") {
    let n = 1
    for (let r = 0; r < rows; r++) {
      sql += r === 0 ? "(" : ", ("
      for (let c = 0; c < t.columns; c++) sql += c === 0 ? `$${n++}` : `, $${n++}`
      sql += ")"
    }
  } else {
    let tuple = "("
    for (let c = 0; c < t.columns; c++) tuple += c === 0 ? "?" : ", ?"
    tuple += ")"
    sql += tuple
    for (let r = 1; r < rows; r++) sql += `, ${tuple}`
  }
  sql += t.tail
  // Batch sizes are few in practice (flushSize, and what dedupe or a split leaves); keep the cache small.
  if (t.texts.size >= 64) t.texts.clear()
  t.texts.set(rows, sql)
  return sql
}

/** The statement text for one row: the shape behind the fingerprint. @internal */
export const shapeText = (dialect: Dialect, table: Table.Any, pgForm: PgForm): string => {
  const t = template(dialect, table, internals(table), pgForm)
  return t.form === "values" ? valuesText(t, 1) : t.head
}

/**
 * The fingerprint of a table's statement: FNV-1a 64 of the dialect and the one-row statement text.
 * Cached with the template.
 *
 * @internal
 */
export const fingerprintOf = (dialect: Dialect, table: Table.Any, pgForm: PgForm): string => {
  const t = template(dialect, table, internals(table), pgForm)
  t.fingerprint ??= fnv1a64(`${dialect}|${shapeText(dialect, table, pgForm)}`)
  return t.fingerprint
}

// ---------------------------------------------------------------- plan

/**
 * Dedupe, encode, convert and split one batch of rows into statements.
 * Throws `RowEncodeError` when a row cannot be encoded with the table's schema.
 *
 * @internal
 */
export const plan = (
  dialect: Dialect,
  table: Table.Any,
  input: ReadonlyArray<unknown>,
  options: BuildOptions
): Plan => {
  const own = internals(table)
  if (input.length === 0)
    return { statements: [], dedupe: { rowsIn: 0, rowsOut: 0, nullKeys: 0 }, rows: input }
  const deduped = dedupe(table, own.keyOf, input)
  let rows = deduped.rows
  if (own.encode !== undefined) {
    const encoded: Array<unknown> = new Array(rows.length)
    for (let i = 0; i < rows.length; i++) {
      const result = own.encode(rows[i])
      if (Either.isLeft(result)) throw new RowEncodeError({ table: table.name, detail: result.left })
      encoded[i] = result.right
    }
    rows = encoded
  }
  const t = template(dialect, table, own, options.pgForm, options.pgTypes)
  const columns = table.columns
  const maxBytes = options.maxStatementBytes
  const fixedBytes = t.head.length + t.tail.length
  const statements: Array<Statement> = []
  if (t.form === "unnest") {
    // One text array literal per column: measure them, split by estimate only when too big.
    const whole = arrayLiterals(columns, t.jsonColumns, rows)
    let bytes = fixedBytes
    for (const literal of whole) bytes += literal.length * 3
    if (rows.length === 1 || bytes <= maxBytes) {
      statements.push({ sql: t.head, params: whole, rows: rows.length })
    } else {
      let start = 0
      for (const end of split(rows, columns, Number.MAX_SAFE_INTEGER, maxBytes, fixedBytes)) {
        const chunk = rows.slice(start, end)
        statements.push({
          sql: t.head,
          params: arrayLiterals(columns, t.jsonColumns, chunk),
          rows: chunk.length
        })
        start = end
      }
    }
  } else if (t.form === "json") {
    // The JSON text is the statement's payload: measure it instead of estimating row by row.
    const whole = jsonText(own, rows)
    if (rows.length === 1 || fixedBytes + whole.length * 3 <= maxBytes) {
      statements.push({ sql: t.head, params: [whole], rows: rows.length })
    } else {
      let start = 0
      for (const end of split(rows, columns, Number.MAX_SAFE_INTEGER, maxBytes, fixedBytes)) {
        const chunk = rows.slice(start, end)
        statements.push({ sql: t.head, params: [jsonText(own, chunk)], rows: chunk.length })
        start = end
      }
    }
  } else {
    const maxRows = Math.max(1, Math.floor(options.maxParams / t.columns))
    // The common case, a batch within the row limit: its values are bound and its bytes estimated in
    // one pass; only a batch over the byte limit is measured again row by row by `split` (the same
    // estimate: the partial sums only grow, so the whole fits exactly when `split` would not cut).
    const measured = Number.isFinite(maxBytes)
    const whole = rows.length <= maxRows ? valuesStatement(t, own, columns, rows, measured) : undefined
    if (whole !== undefined && (rows.length === 1 || fixedBytes + whole.bytes <= maxBytes)) {
      statements.push(whole.statement)
    } else {
      const ends = measured
        ? split(rows, columns, maxRows, maxBytes, fixedBytes)
        : Array.from({ length: Math.ceil(rows.length / maxRows) }, (_, i) =>
            Math.min((i + 1) * maxRows, rows.length)
          )
      let start = 0
      for (const end of ends) {
        const chunk = start === 0 && end === rows.length ? rows : rows.slice(start, end)
        statements.push(valuesStatement(t, own, columns, chunk, false).statement)
        start = end
      }
    }
  }
  return {
    statements,
    dedupe: { rowsIn: input.length, rowsOut: rows.length, nullKeys: deduped.nullKeys },
    rows
  }
}

const jsonText = (own: Internals, rows: ReadonlyArray<unknown>): string =>
  needsReplacer(own.kinds) ? JSON.stringify(rows, jsonReplacer) : JSON.stringify(rows)

/**
 * One multi-row `VALUES` statement of `rows`; with `measure`, also their estimated bytes (as
 * `split` estimates them: 4 per row plus each value's), 0 otherwise.
 */
const valuesStatement = (
  t: Template,
  own: Internals,
  columns: ReadonlyArray<string>,
  rows: ReadonlyArray<unknown>,
  measure: boolean
): { readonly statement: Statement; readonly bytes: number } => {
  const n = columns.length
  const params: Array<unknown> = new Array(rows.length * n)
  const dialect = t.dialect
  const kinds = own.kinds
  const plain = own.allPlain
  let p = 0
  let bytes = measure ? 4 * rows.length : 0
  for (let r = 0; r < rows.length; r++) {
    const row = rows[r] as Row
    for (let c = 0; c < n; c++) {
      const value = row[columns[c]!]
      if (measure) bytes += estimateValue(value)
      params[p++] =
        plain || kinds[c] === "plain"
          ? value === undefined
            ? null
            : value
          : toDriver(dialect, value, kinds[c])
    }
  }
  return { statement: { sql: valuesText(t, rows.length), params, rows: rows.length }, bytes }
}

// ---------------------------------------------------------------- fingerprint

const FNV_OFFSET = 0xcbf29ce484222325n
const FNV_PRIME = 0x100000001b3n
const MASK = 0xffffffffffffffffn

/**
 * FNV-1a 64-bit of the whitespace-normalised text, as 16 hex digits (the seed's algorithm).
 *
 * @internal
 */
export const fnv1a64 = (text: string): string => {
  let hash = FNV_OFFSET
  for (const byte of Buffer.from(text.trim().split(/\s+/).join(" "), "utf8")) {
    hash ^= BigInt(byte)
    hash = (hash * FNV_PRIME) & MASK
  }
  return hash.toString(16).padStart(16, "0")
}
