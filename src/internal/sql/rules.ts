/**
 * Error classification for the SQL drivers' real error objects, found in `SqlError.cause`:
 * node-postgres `DatabaseError` (SQLSTATE in `code`), mysql2 errors (`errno`, `code`, `sqlState`),
 * better-sqlite3 `SqliteError` (extended result code in `code`), and Node socket errors.
 *
 * Reasons are a small fixed dictionary so they can label metrics; `rowLevel` marks errors one row can
 * cause, which makes the engine isolate the bad rows by splitting the batch.
 */
import * as Predicate from "effect/Predicate"
import type { Classification, Rule } from "../../Retry.js"

const retry = (reason: string): Classification => ({ retryable: true, reason })
const final = (reason: string): Classification => ({ retryable: false, reason })
const row = (reason: string): Classification => ({ retryable: false, reason, rowLevel: true })

const nodeSocketCodes = new Set([
  "ECONNRESET",
  "ECONNREFUSED",
  "ECONNABORTED",
  "ETIMEDOUT",
  "EPIPE",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENOTFOUND",
  "EAI_AGAIN"
])

// ---------------------------------------------------------------- PostgreSQL

const pgExact: Record<string, Classification> = {
  "40001": retry("serialization"),
  "40P01": retry("deadlock"),
  "55P03": retry("lock_timeout"),
  "57014": retry("timeout"),
  "57P01": retry("connection"),
  "57P02": retry("connection"),
  "57P03": retry("connection"),
  "53300": retry("connection"),
  "53200": retry("resource"),
  "53400": retry("resource"),
  "53100": final("resource"),
  "08P01": row("statement_too_large"),
  "23505": row("duplicate_key"),
  "23502": row("not_null"),
  "23503": row("foreign_key"),
  "23514": row("check_violation"),
  "23P01": row("constraint"),
  "22001": row("value_too_long"),
  "21000": row("duplicate_in_batch"),
  "42601": final("syntax"),
  "42501": final("permission"),
  "25P02": final("non_retryable")
}

/** @internal */
export const classifyPg = (code: string): Classification => {
  const exact = pgExact[code]
  if (exact !== undefined) return exact
  switch (code.slice(0, 2)) {
    case "08":
      return retry("connection")
    case "22":
      return row("bad_value")
    case "23":
      return row("constraint")
    case "28":
      return final("permission")
    case "42":
      return final("schema")
    case "40":
      return retry("serialization")
    case "58":
      return retry("io")
    default:
      return final("non_retryable")
  }
}

// ---------------------------------------------------------------- MySQL / MariaDB

const mysqlErrno: Record<number, Classification> = {
  1213: retry("deadlock"),
  1205: retry("lock_timeout"),
  3024: retry("timeout"),
  1317: retry("timeout"),
  1969: retry("timeout"),
  1040: retry("connection"),
  1042: retry("connection"),
  1043: retry("connection"),
  1053: retry("connection"),
  1158: retry("connection"),
  1159: retry("connection"),
  1160: retry("connection"),
  1161: retry("connection"),
  1927: retry("connection"),
  2002: retry("connection"),
  2003: retry("connection"),
  2006: retry("connection"),
  2013: retry("connection"),
  2055: retry("connection"),
  4031: retry("connection"),
  1062: row("duplicate_key"),
  1586: row("duplicate_key"),
  1048: row("not_null"),
  1364: row("not_null"),
  1406: row("value_too_long"),
  1264: row("bad_value"),
  1265: row("bad_value"),
  1292: row("bad_value"),
  1366: row("bad_value"),
  1367: row("bad_value"),
  1452: row("foreign_key"),
  1451: row("foreign_key"),
  1216: row("foreign_key"),
  1217: row("foreign_key"),
  3819: row("check_violation"),
  4025: row("check_violation"),
  1390: row("statement_too_large"),
  1153: row("statement_too_large"),
  1064: final("syntax"),
  1146: final("schema"),
  1054: final("schema"),
  1136: final("schema"),
  1044: final("permission"),
  1045: final("permission"),
  1142: final("permission"),
  1143: final("permission")
}

const mysqlClientCodes: Record<string, Classification> = {
  PROTOCOL_CONNECTION_LOST: retry("connection"),
  PROTOCOL_SEQUENCE_TIMEOUT: retry("timeout"),
  PROTOCOL_ENQUEUE_AFTER_FATAL_ERROR: retry("connection"),
  PROTOCOL_ENQUEUE_AFTER_QUIT: retry("connection"),
  ER_NET_PACKET_TOO_LARGE: row("statement_too_large")
}

/** @internal */
export const classifyMysql = (errno: number | undefined, code: string | undefined): Classification => {
  if (errno !== undefined) {
    const known = mysqlErrno[errno]
    if (known !== undefined) return known
  }
  if (code !== undefined) {
    const known = mysqlClientCodes[code]
    if (known !== undefined) return known
  }
  return final("non_retryable")
}

// ---------------------------------------------------------------- SQLite

/** @internal */
export const classifySqlite = (code: string, message: string): Classification => {
  if (code.startsWith("SQLITE_BUSY") || code.startsWith("SQLITE_LOCKED")) return retry("busy")
  switch (code) {
    case "SQLITE_CONSTRAINT_PRIMARYKEY":
    case "SQLITE_CONSTRAINT_UNIQUE":
    case "SQLITE_CONSTRAINT_ROWID":
      return row("duplicate_key")
    case "SQLITE_CONSTRAINT_NOTNULL":
      return row("not_null")
    case "SQLITE_CONSTRAINT_CHECK":
      return row("check_violation")
    case "SQLITE_CONSTRAINT_FOREIGNKEY":
      return row("foreign_key")
    case "SQLITE_CONSTRAINT_DATATYPE":
    case "SQLITE_MISMATCH":
      return row("bad_value")
    case "SQLITE_TOOBIG":
      return row("value_too_long")
    case "SQLITE_INTERRUPT":
      return retry("timeout")
    case "SQLITE_NOMEM":
      return retry("resource")
    case "SQLITE_FULL":
      return final("resource")
    case "SQLITE_READONLY":
    case "SQLITE_AUTH":
    case "SQLITE_PERM":
      return final("permission")
    case "SQLITE_CORRUPT":
    case "SQLITE_NOTADB":
      return final("corrupt")
  }
  if (code.startsWith("SQLITE_CONSTRAINT")) return row("constraint")
  if (code.startsWith("SQLITE_IOERR") || code.startsWith("SQLITE_CANTOPEN")) return retry("io")
  const text = message.toLowerCase()
  if (text.includes("too many sql variables")) return row("statement_too_large")
  if (text.includes("syntax error")) return final("syntax")
  if (text.includes("no such table") || text.includes("no such column") || text.includes("has no column")) {
    return final("schema")
  }
  return final("non_retryable")
}

// ---------------------------------------------------------------- the rule

const str = (u: object, key: string): string | undefined => {
  const value = (u as Record<string, unknown>)[key]
  return typeof value === "string" ? value : undefined
}

/** Classifies one driver error object; `undefined` when it is not a driver error we know. */
const classifyCause = (cause: unknown): Classification | undefined => {
  if (typeof cause !== "object" || cause === null) return undefined
  const code = str(cause, "code")
  const message = str(cause, "message") ?? ""
  if (code?.startsWith("SQLITE_")) return classifySqlite(code, message)
  // node-postgres DatabaseError: a five-character SQLSTATE plus the server's severity.
  if (code !== undefined && /^[0-9A-Z]{5}$/.test(code) && str(cause, "severity") !== undefined) {
    return classifyPg(code)
  }
  const errno = (cause as Record<string, unknown>).errno
  // mysql2: server errors carry sqlState and a positive errno; client errors carry PROTOCOL_* codes.
  if (
    (typeof errno === "number" && errno > 0 && str(cause, "sqlState") !== undefined) ||
    code?.startsWith("PROTOCOL_") === true ||
    code === "ER_NET_PACKET_TOO_LARGE"
  ) {
    return classifyMysql(typeof errno === "number" && errno > 0 ? errno : undefined, code)
  }
  if (code !== undefined && nodeSocketCodes.has(code)) return retry("connection")
  // better-sqlite3 throws a TypeError for values it cannot bind, a RangeError for a bigint outside
  // int64 (or a string or buffer over its limit): one row's value, so the others can commit.
  if (cause instanceof TypeError && message.includes("SQLite3 can only bind")) return row("bad_value")
  if (cause instanceof RangeError && message.includes("is too big")) return row("bad_value")
  // node-postgres: the connection died under a query, or the pool could not connect in time.
  if (
    /connection terminated|connection timeout|timeout exceeded when trying to connect|not queryable/i.test(
      message
    )
  ) {
    return retry("connection")
  }
  return undefined
}

/** Driver errors that say the statement never left the client: the connection was never made. */
const neverSent = (cause: unknown): boolean => {
  if (typeof cause !== "object" || cause === null) return false
  const code = str(cause, "code")
  if (str(cause, "syscall") === "connect") return true
  if (code === "ECONNREFUSED" || code === "ENOTFOUND" || code === "EAI_AGAIN") return true
  // mysql2 refuses to queue a command on a connection that already died: it was never sent.
  if (code === "PROTOCOL_ENQUEUE_AFTER_FATAL_ERROR" || code === "PROTOCOL_ENQUEUE_AFTER_QUIT") return true
  return /not queryable|timeout exceeded when trying to connect|terminated due to connection timeout/i.test(
    str(cause, "message") ?? ""
  )
}

/**
 * A lost connection is an unknown outcome when the statement may have reached the server: the error
 * came while executing (not while acquiring a connection), and the driver does not say the
 * connection was never made. The server may have committed before the connection dropped (a
 * PostgreSQL `-m immediate` stop, a MariaDB `kill -9`, a cut in the network).
 */
const lostWhileExecuting = (error: { readonly message?: unknown; readonly cause?: unknown }): boolean => {
  const message = typeof error.message === "string" ? error.message : ""
  if (!/failed to execute statement|connection error/i.test(message)) return false
  const cause = error.cause
  const inner = typeof cause === "object" && cause !== null ? (cause as { cause?: unknown }).cause : undefined
  return !neverSent(cause) && !neverSent(inner)
}

/** MySQL errnos of a statement the server refused or ended itself (timeouts, failed connects). */
const mysqlRolledBack = new Set([3024, 1317, 1969, 1040, 1042, 1043, 2002, 2003])

/**
 * An answer from the server that ended the statement and kept the session: PostgreSQL's
 * statement_timeout or a cancel (57014), MariaDB's max_statement_time (1969), … The statement was
 * rolled back. Not so for the codes that end the session (PostgreSQL 57P0x and 08xxx, MySQL 1053,
 * 1927, 2006, 2013…): the server may have committed before it went.
 */
const serverRolledBack = (cause: unknown): boolean => {
  if (typeof cause !== "object" || cause === null) return false
  const code = str(cause, "code")
  if (code !== undefined && /^[0-9A-Z]{5}$/.test(code) && str(cause, "severity") !== undefined) {
    return !code.startsWith("57P") && !code.startsWith("08")
  }
  const errno = (cause as { errno?: unknown }).errno
  return typeof errno === "number" && mysqlRolledBack.has(errno)
}

/** Reasons under which a lost connection is reported (PROTOCOL_SEQUENCE_TIMEOUT is a timeout). */
const lostReasons = new Set(["connection", "timeout"])

/**
 * The SQL rule: looks into `SqlError.cause` (and one more `cause` level for wrapped driver errors).
 * Our own row-encoding failures and values a column would round (`ColumnValueError`) are row-level
 * `bad_value`; a failed read of a table's column types is classified by its cause, as known not
 * written; a non-table target is `not_a_table`. A connection lost while a statement ran is retryable with an unknown outcome (see
 * `Classification.unknownOutcome`); a server-side timeout (PostgreSQL 57014, MariaDB 1969) is a
 * known rollback.
 *
 * @internal
 */
export const sqlRule: Rule = (error) => {
  if (Predicate.isTagged(error, "RowEncodeError") || Predicate.isTagged(error, "ColumnValueError"))
    return row("bad_value")
  // Reading the catalog wrote nothing: neither an unknown outcome nor one row's fault.
  if (Predicate.isTagged(error, "ColumnLookupError")) {
    const c = sqlRule((error as { readonly cause?: unknown }).cause)
    return c === undefined ? undefined : { retryable: c.retryable, reason: c.reason }
  }
  if (Predicate.isTagged(error, "NotATable")) return final("not_a_table")
  if (Predicate.isTagged(error, "SqlWriteError"))
    return sqlRule((error as { readonly cause?: unknown }).cause)
  if (!Predicate.isTagged(error, "SqlError")) return classifyCause(error)
  const classification = classifySqlError(error as { readonly message?: unknown; readonly cause?: unknown })
  if (classification === undefined || !lostReasons.has(classification.reason)) return classification
  if (serverRolledBack((error as { readonly cause?: unknown }).cause)) return classification
  return lostWhileExecuting(error as { readonly message?: unknown; readonly cause?: unknown })
    ? { ...classification, unknownOutcome: true }
    : classification
}

const classifySqlError = (error: {
  readonly message?: unknown
  readonly cause?: unknown
}): Classification | undefined => {
  const cause = (error as { readonly cause?: unknown }).cause
  const direct = classifyCause(cause)
  if (direct !== undefined) return direct
  const inner =
    typeof cause === "object" && cause !== null ? (cause as { readonly cause?: unknown }).cause : undefined
  const wrapped = classifyCause(inner)
  if (wrapped !== undefined) return wrapped
  const message = (error as { readonly message?: unknown }).message
  if (typeof message === "string" && /failed to (acquire|connect)|connection/i.test(message)) {
    return retry("connection")
  }
  return undefined
}
