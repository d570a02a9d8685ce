/**
 * The classification tables (code → retryable, reason, rowLevel) and how the rule recognises each
 * driver's error object inside `SqlError`. The errors the servers really raise are in
 * sql-errors.test.ts; this file pins the rest of the dictionary.
 */
import { SqlError } from "@effect/sql/SqlError"
import { describe, expect, it } from "@effect/vitest"
import * as Mysql from "effect-batchflow/Mysql"
import * as Postgres from "effect-batchflow/Postgres"
import * as Sql from "effect-batchflow/Sql"
import * as Sqlite from "effect-batchflow/Sqlite"

const retry = (reason: string) => ({ retryable: true, reason })
const final = (reason: string) => ({ retryable: false, reason })
const row = (reason: string) => ({ retryable: false, reason, rowLevel: true })
const lostWhileRunning = { retryable: true, reason: "connection", unknownOutcome: true }

describe("PostgreSQL SQLSTATEs", () => {
  const table: ReadonlyArray<readonly [string, object]> = [
    ["40001", retry("serialization")],
    ["40P01", retry("deadlock")],
    ["55P03", retry("lock_timeout")],
    ["57014", retry("timeout")],
    ["08000", retry("connection")],
    ["08003", retry("connection")],
    ["08006", retry("connection")],
    ["57P01", retry("connection")],
    ["53300", retry("connection")],
    ["08P01", row("statement_too_large")],
    ["23505", row("duplicate_key")],
    ["23502", row("not_null")],
    ["23503", row("foreign_key")],
    ["23514", row("check_violation")],
    ["22001", row("value_too_long")],
    ["22P02", row("bad_value")],
    ["22003", row("bad_value")],
    ["21000", row("duplicate_in_batch")],
    ["42601", final("syntax")],
    ["42P01", final("schema")],
    ["42703", final("schema")],
    ["42501", final("permission")],
    ["P0001", final("non_retryable")],
    ["XX000", final("non_retryable")]
  ]
  for (const [code, expected] of table) {
    it(code, () => expect(Postgres.classifySqlState(code)).toEqual(expected))
  }
})

describe("MySQL / MariaDB errnos", () => {
  const table: ReadonlyArray<readonly [number, object]> = [
    [1213, retry("deadlock")],
    [1205, retry("lock_timeout")],
    [3024, retry("timeout")],
    [1040, retry("connection")],
    [2006, retry("connection")],
    [2013, retry("connection")],
    [1062, row("duplicate_key")],
    [1048, row("not_null")],
    [1364, row("not_null")],
    [1406, row("value_too_long")],
    [1366, row("bad_value")],
    [1452, row("foreign_key")],
    [4025, row("check_violation")],
    [3819, row("check_violation")],
    [1390, row("statement_too_large")],
    [1153, row("statement_too_large")],
    [1064, final("syntax")],
    [1146, final("schema")],
    [1045, final("permission")],
    [9999, final("non_retryable")]
  ]
  for (const [errno, expected] of table) {
    it(String(errno), () => expect(Mysql.classifyErrno(errno)).toEqual(expected))
  }
})

describe("SQLite result codes", () => {
  const table: ReadonlyArray<readonly [string, object]> = [
    ["SQLITE_BUSY", retry("busy")],
    ["SQLITE_BUSY_SNAPSHOT", retry("busy")],
    ["SQLITE_LOCKED", retry("busy")],
    ["SQLITE_LOCKED_SHAREDCACHE", retry("busy")],
    ["SQLITE_CONSTRAINT_PRIMARYKEY", row("duplicate_key")],
    ["SQLITE_CONSTRAINT_UNIQUE", row("duplicate_key")],
    ["SQLITE_CONSTRAINT_NOTNULL", row("not_null")],
    ["SQLITE_CONSTRAINT_CHECK", row("check_violation")],
    ["SQLITE_CONSTRAINT_FOREIGNKEY", row("foreign_key")],
    ["SQLITE_CONSTRAINT_TRIGGER", row("constraint")],
    ["SQLITE_TOOBIG", row("value_too_long")],
    ["SQLITE_IOERR_WRITE", retry("io")],
    ["SQLITE_READONLY", final("permission")],
    ["SQLITE_FULL", final("resource")],
    ["SQLITE_CORRUPT", final("corrupt")]
  ]
  for (const [code, expected] of table) {
    it(code, () => expect(Sqlite.classifyCode(code)).toEqual(expected))
  }
  it("SQLITE_ERROR by message", () => {
    expect(Sqlite.classifyCode("SQLITE_ERROR", "too many SQL variables")).toEqual(row("statement_too_large"))
    expect(Sqlite.classifyCode("SQLITE_ERROR", 'near "INSRT": syntax error')).toEqual(final("syntax"))
    expect(Sqlite.classifyCode("SQLITE_ERROR", "no such table: x")).toEqual(final("schema"))
    expect(Sqlite.classifyCode("SQLITE_ERROR", "something else")).toEqual(final("non_retryable"))
  })
})

describe("Sql.classify recognises each driver's error inside SqlError", () => {
  const wrap = (cause: unknown) => new SqlError({ cause, message: "Failed to execute statement" })
  const pgError = (code: string) => Object.assign(new Error("pg"), { code, severity: "ERROR" })

  it("node-postgres DatabaseError (SQLSTATE + severity)", () => {
    expect(Sql.classify(wrap(pgError("40P01")))).toEqual(retry("deadlock"))
  })
  it("mysql2 server errors (errno + sqlState) and client errors (PROTOCOL_*)", () => {
    const server = Object.assign(new Error("dup"), { errno: 1062, code: "ER_DUP_ENTRY", sqlState: "23000" })
    expect(Sql.classify(wrap(server))).toEqual(row("duplicate_key"))
    const lost = Object.assign(new Error("lost"), { code: "PROTOCOL_CONNECTION_LOST", fatal: true })
    expect(Sql.classify(wrap(lost))).toEqual(lostWhileRunning)
  })
  it("better-sqlite3 SqliteError", () => {
    expect(Sql.classify(wrap(Object.assign(new Error("busy"), { code: "SQLITE_BUSY" })))).toEqual(
      retry("busy")
    )
  })
  it("Node socket errors, any driver", () => {
    const reset = Object.assign(new Error("read ECONNRESET"), { code: "ECONNRESET", errno: -104 })
    expect(Sql.classify(wrap(reset))).toEqual(lostWhileRunning)
    expect(
      Sql.classify(new SqlError({ cause: new Error("x"), message: "Failed to acquire connection" }))
    ).toEqual(retry("connection"))
  })
  it("a connection lost while a statement ran is an unknown outcome; one never made, or a server rollback, is not", () => {
    // The statement may have committed before the connection went.
    expect(Sql.classify(wrap(new Error("Connection terminated unexpectedly")))).toEqual(lostWhileRunning)
    expect(Sql.classify(wrap(pgError("57P01")))).toEqual(lostWhileRunning)
    const gone = Object.assign(new Error("gone"), { errno: 2013, code: "CR_SERVER_LOST", sqlState: "HY000" })
    expect(Sql.classify(wrap(gone))).toEqual(lostWhileRunning)
    expect(
      Sql.classify(new SqlError({ cause: new Error("socket hang up"), message: "Connection error" }))
    ).toEqual(lostWhileRunning)
    // Never sent: the connection could not be made.
    const refused = Object.assign(new Error("connect ECONNREFUSED"), {
      code: "ECONNREFUSED",
      syscall: "connect"
    })
    expect(Sql.classify(wrap(refused))).toEqual(retry("connection"))
    const connectTimeout = Object.assign(new Error("connect ETIMEDOUT"), {
      code: "ETIMEDOUT",
      syscall: "connect"
    })
    expect(Sql.classify(wrap(connectTimeout))).toEqual(retry("connection"))
    expect(
      Sql.classify(wrap(new Error("Client has encountered a connection error and is not queryable")))
    ).toEqual(retry("connection"))
    // The server ended the statement itself and kept the session: rolled back.
    expect(Sql.classify(wrap(pgError("57014")))).toEqual(retry("timeout"))
    const maxTime = Object.assign(new Error("max_statement_time"), {
      errno: 1969,
      code: "ER_STATEMENT_TIMEOUT",
      sqlState: "70100"
    })
    expect(Sql.classify(wrap(maxTime))).toEqual(retry("timeout"))
  })
  it("a wrapping error one level down", () => {
    expect(Sql.classify(wrap({ cause: pgError("55P03") }))).toEqual(retry("lock_timeout"))
  })
  it("our own errors", () => {
    expect(Sql.classify(new Sql.RowEncodeError({ table: "t", detail: "bad" }))).toEqual(row("bad_value"))
    expect(Sql.classify(new Sql.NotATable({ target: "t" }))).toEqual(final("not_a_table"))
    expect(
      Sql.classify(
        new Sql.SqlWriteError({
          table: "t",
          rows: 1,
          fingerprint: "0",
          code: "23505",
          detail: "dup",
          cause: wrap(pgError("23505"))
        })
      )
    ).toEqual(row("duplicate_key"))
  })
  it("errors it does not know: undefined (the engine then reports non_retryable)", () => {
    expect(Sql.classify(new Error("something"))).toBeUndefined()
    expect(Sql.classify(wrap(new Error("odd")))).toBeUndefined()
    expect(Sql.classify("a string")).toBeUndefined()
  })
})
