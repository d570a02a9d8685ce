/**
 * The SQL backend's own errors.
 */
import * as Schema from "effect/Schema"
import * as BatchFlowError from "../../BatchFlowError.js"

/**
 * The client's dialect is not one effect-batchflow writes (or not the one the layer expects).
 *
 * @internal
 */
export class UnsupportedDialect extends Schema.TaggedError<UnsupportedDialect>()("UnsupportedDialect", {
  dialect: Schema.String,
  expected: Schema.String
}) {
  readonly [BatchFlowError.TypeId]: BatchFlowError.TypeId = BatchFlowError.TypeId
  override get message(): string {
    return `The SqlClient's dialect is "${this.dialect}", but ${this.expected} is needed. Provide the matching client layer (PgClient.layer, MysqlClient.layer or SqliteClient.layer).`
  }
}

/**
 * A row could not be encoded with its table's schema (a transformation failed). Row-level: the
 * engine isolates the row and commits the others.
 *
 * @internal
 */
export class RowEncodeError extends Schema.TaggedError<RowEncodeError>()("RowEncodeError", {
  table: Schema.String,
  detail: Schema.String
}) {
  readonly [BatchFlowError.TypeId]: BatchFlowError.TypeId = BatchFlowError.TypeId
  override get message(): string {
    return `A row for table "${this.table}" could not be encoded with the table's schema: ${this.detail}. Fix the value or the schema's encoding.`
  }
}

/**
 * A row's value would not be stored as it is: the column would round it (a fraction into an integer
 * column, more fractional digits than a DECIMAL's scale) or clamp it (outside the column's range).
 * Found before the write, from the column types the server's catalog gives. Row-level (`bad_value`):
 * the engine isolates the row and commits the others.
 *
 * @internal
 */
export class ColumnValueError extends Schema.TaggedError<ColumnValueError>()("ColumnValueError", {
  table: Schema.String,
  /** The row's field (the column's name). */
  column: Schema.String,
  /** The column's type as the server shows it, e.g. `bigint(20)`, `decimal(5,2)`. */
  columnType: Schema.String,
  /**
   * `fraction`: a fraction for an integer column; `scale`: more fractional digits than the column's
   * scale; `range`: outside the column's range or digits.
   */
  problem: Schema.Literal("fraction", "scale", "range"),
  /** What is wrong with the value (it quotes the value; masked in messages by default). */
  detail: Schema.String
}) {
  readonly [BatchFlowError.TypeId]: BatchFlowError.TypeId = BatchFlowError.TypeId
  override get message(): string {
    const advice =
      this.problem === "fraction"
        ? "round it yourself, declare the field Schema.Int so that submit rejects it, or make the column DECIMAL or DOUBLE"
        : this.problem === "scale"
          ? "round it to the column's scale yourself, or give the column a larger scale"
          : "write a value within the column's range, or widen the column's type"
    return `Field "${this.column}" of table "${this.table}" was not written: ${this.detail}. To store it, ${advice}.`
  }
}

/**
 * The column types of a table could not be read from the server's catalog (a connection error,
 * most often): nothing was written. Classified by its cause, never as an unknown outcome.
 *
 * @internal
 */
export class ColumnLookupError extends Schema.TaggedError<ColumnLookupError>()("ColumnLookupError", {
  table: Schema.String,
  /** The `SqlError` from `@effect/sql`. */
  cause: Schema.Defect
}) {
  readonly [BatchFlowError.TypeId]: BatchFlowError.TypeId = BatchFlowError.TypeId
  override get message(): string {
    const cause = this.cause as {
      readonly message?: unknown
      readonly cause?: { readonly message?: unknown }
    }
    const inner = typeof cause?.cause?.message === "string" ? cause.cause.message : cause?.message
    return `Reading the column types of table "${this.table}" failed, nothing was written: ${String(inner)}`
  }
}

/**
 * The executor was given a target that is not a `Table`.
 *
 * @internal
 */
export class NotATable extends Schema.TaggedError<NotATable>()("NotATable", {
  target: Schema.String
}) {
  readonly [BatchFlowError.TypeId]: BatchFlowError.TypeId = BatchFlowError.TypeId
  override get message(): string {
    return `Target "${this.target}" is not a Table: a SQL flow writes only targets made with Table.make.`
  }
}

/**
 * A statement failed: names the table and carries the driver's own message and code (the
 * `SqlError` it wraps says only "Failed to execute statement"). Classified by its cause.
 *
 * @internal
 */
export class SqlWriteError extends Schema.TaggedError<SqlWriteError>()("SqlWriteError", {
  table: Schema.String,
  /** Rows in the failed batch (after dedupe). */
  rows: Schema.Number,
  /** The statement's fingerprint (see `Sql.fingerprint`). */
  fingerprint: Schema.String,
  /** The driver's code: a SQLSTATE, a MySQL errno, a SQLite result code, or "". */
  code: Schema.String,
  /** The driver's message. */
  detail: Schema.String,
  /** The `SqlError` from `@effect/sql`, whose `cause` is the driver's error. */
  cause: Schema.Defect
}) {
  readonly [BatchFlowError.TypeId]: BatchFlowError.TypeId = BatchFlowError.TypeId
  override get message(): string {
    const code = this.code === "" ? "" : ` [${this.code}]`
    return `Writing ${this.rows} row(s) to table "${this.table}" failed: ${this.detail}${code}`
  }
}

const field = (u: unknown, key: string): unknown =>
  typeof u === "object" && u !== null ? (u as Record<string, unknown>)[key] : undefined

/**
 * Wraps a `SqlError` with the driver's message and code.
 *
 * @internal
 */
export const describeSqlError = (
  error: { readonly message: string; readonly cause?: unknown },
  table: string,
  rows: number,
  fingerprint: string
): SqlWriteError => {
  const cause = error.cause
  const errno = field(cause, "errno")
  const code = field(cause, "code")
  const driverCode =
    typeof errno === "number" && errno > 0 && typeof field(cause, "sqlState") === "string"
      ? String(errno)
      : typeof code === "string"
        ? code
        : ""
  const message = field(cause, "message")
  return new SqlWriteError({
    table,
    rows,
    fingerprint,
    code: driverCode,
    detail: typeof message === "string" && message !== "" ? message : error.message,
    cause: error
  })
}
