/**
 * Row values stay out of logs and error messages unless `logRowValues` asks for them, and then the
 * sensitive columns are redacted. Failures come from executors whose error text quotes row values
 * the way drivers do, and from a real MariaDB duplicate-key error.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { describe, expect, it } from "@effect/vitest"
import { Chunk, ConfigError, ConfigProvider, Effect, Schema, Stream } from "effect"
import { BatchExecutor, BatchFlowConfig, BatchFlowError, Target } from "effect-batchflow"
import * as Conflict from "effect-batchflow/Conflict"
import * as Mysql from "effect-batchflow/Mysql"
import * as Sql from "effect-batchflow/Sql"
import * as Table from "effect-batchflow/Table"
import { capturing, startFlow } from "./helpers-engine.js"
import { mysqlClient, recreate, runFlow } from "./sql-helpers.js"

const User = Schema.Struct({
  id: Schema.Number,
  name: Schema.String,
  email: Schema.String,
  password: Schema.String
})
type User = typeof User.Type
const Users = Target.make("r_users", { schema: User, key: ["id"] })

const user = (id: number): User => ({
  id: 40_000 + id,
  name: `carol-${id}`,
  email: `alice${id}@example.com`,
  password: `hunter2-${id}`
})

/** Every value of the rows as text: none may appear where row values must not. */
const valuesOf = (rows: ReadonlyArray<User>): ReadonlyArray<string> =>
  rows.flatMap((row) => [String(row.id), row.name, row.email, row.password])

/** Submits `rows`, closes the flow and returns its log lines and failures. */
const failWith = (
  options: BatchFlowConfig.Options,
  executor: BatchExecutor.BatchExecutor,
  rows: ReadonlyArray<User>
) =>
  capturing((logs) =>
    Effect.gen(function* () {
      const { flow, closeScope } = yield* startFlow(
        { flushSize: 100, flushInterval: "1 hour", retry: { maxAttempts: 1 }, ...options },
        executor
      )
      yield* flow.submitAll(Users, rows)
      yield* closeScope()
      const failures = Chunk.toReadonlyArray(yield* Stream.runCollect(flow.failures))
      return { logs, failures }
    })
  )

/** The `InvalidRow` a submit failed with (failing the test on any other outcome). */
const invalidRow = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.map(Effect.flip(effect), (error) => {
    expect(error).toBeInstanceOf(BatchFlowError.InvalidRow)
    return error as BatchFlowError.InvalidRow
  })

/** An executor failing with an error whose text is built from the batch's rows. */
const failingWith = (text: (rows: ReadonlyArray<User>) => string) =>
  BatchExecutor.make((_target, rows) => Effect.fail(new Error(text(rows as ReadonlyArray<User>))))

const duplicateEntry = (rows: ReadonlyArray<User>) =>
  `Duplicate entry '${rows[0]!.email}' for key 'r_users.email_unique' (user ${rows[0]!.name}, id ${rows[0]!.id})`

describe("by default, row values appear in no log line and no error message", () => {
  it.effect(
    "a driver message quoting the row: masked in the log and in BatchFailure.message, reason kept",
    () =>
      Effect.gen(function* () {
        const rows = [user(1), user(2)]
        const { logs, failures } = yield* failWith({}, failingWith(duplicateEntry), rows)
        expect(logs).toHaveLength(1)
        expect(failures).toHaveLength(1)
        const failure = failures[0]!
        const log = logs[0]!
        expect(log.level).toBe("ERROR")
        expect(log.annotations).toEqual({ target: "r_users", reason: "non_retryable", rows: 2, attempts: 1 })
        for (const text of [log.message, failure.message]) {
          expect(text).toContain(`2 row(s) for target "r_users"`)
          expect(text).toContain("reason: non_retryable")
          expect(text).toContain("Duplicate entry '***' for key 'r_users.email_unique' (user ***, id ***)")
          for (const value of valuesOf(rows)) expect(text).not.toContain(value)
        }
        // The raw data stays with the failure, for the caller's code.
        expect(failure.rows).toEqual(rows)
        expect((failure.cause as Error).message).toContain("alice1@example.com")
      })
  )

  it.effect("PostgreSQL-style details, Schema messages and JSON causes are masked too", () =>
    Effect.gen(function* () {
      const cases: ReadonlyArray<{
        readonly fail: (rows: ReadonlyArray<User>) => unknown
        readonly kept: string
      }> = [
        {
          fail: (rows) =>
            new Error(
              `duplicate key value violates unique constraint "r_users_email_key"\nKey (email)=(${rows[0]!.email}) already exists.`
            ),
          kept: `unique constraint "r_users_email_key"\nKey (email)=(***) already exists.`
        },
        {
          fail: (rows) => new Error(`invalid input syntax for type integer: "${rows[0]!.password}"`),
          kept: `invalid input syntax for type integer: "***"`
        },
        {
          fail: (rows) => new Error(`Expected number, actual ${rows[0]!.name}`),
          kept: "Expected number, actual ***"
        },
        // Not an Error: the cause is shown as JSON, its keys kept.
        { fail: (rows) => ({ rejected: rows[0] }), kept: `{"rejected":{"id":***,"name":"***","email":"***"` }
      ]
      for (const c of cases) {
        const rows = [user(3)]
        const executor = BatchExecutor.make((_target, batch) =>
          Effect.fail(c.fail(batch as ReadonlyArray<User>))
        )
        const { logs, failures } = yield* failWith({}, executor, rows)
        expect(logs).toHaveLength(1)
        for (const text of [logs[0]!.message, failures[0]!.message]) {
          expect(text).toContain(c.kept)
          for (const value of valuesOf(rows)) expect(text).not.toContain(value)
        }
      }
    })
  )

  it.effect("a row-level failure reports only its row, and masks it", () =>
    Effect.gen(function* () {
      const rows = [user(4), user(5), user(6)]
      const executor = BatchExecutor.make((_target, batch) =>
        Effect.succeed(
          BatchExecutor.partial([{ index: 1, error: new Error(duplicateEntry([batch[1] as User])) }])
        )
      )
      const { logs, failures } = yield* failWith({}, executor, rows)
      expect(failures.map((f) => f.rows)).toEqual([[rows[1]]])
      expect(logs).toHaveLength(1)
      expect(logs[0]!.message).toContain("Duplicate entry '***'")
      for (const value of valuesOf(rows)) expect(JSON.stringify(logs)).not.toContain(value)
    })
  )

  it("a BatchFailure built without a detail masks its cause's text itself", () => {
    const row = user(21)
    const failure = new BatchFlowError.BatchFailure({
      target: "r_users",
      rows: [row],
      attempts: 2,
      reason: "duplicate_key",
      retryable: false,
      cause: new Error(duplicateEntry([row]))
    })
    expect(failure.message).toBe(
      `1 row(s) for target "r_users" were not written after 2 attempts (reason: duplicate_key): Duplicate entry '***' for key 'r_users.email_unique' (user ***, id ***)`
    )
  })

  it.live("a real MariaDB duplicate key: the driver quotes the email, the log and message do not", () => {
    const t = "redaction_dup_mysql"
    const Accounts = Table.make(t, {
      columns: Schema.Struct({ id: Schema.Number, email: Schema.String }),
      conflict: Conflict.none
    })
    return capturing((logs) =>
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        yield* recreate(t, `CREATE TABLE ${t} (id BIGINT PRIMARY KEY, email VARCHAR(100) NOT NULL UNIQUE)`)
        yield* sql.unsafe(`INSERT INTO ${t} (id, email) VALUES (1, 'dup-owner@example.com')`)
        const run = yield* runFlow(Mysql.layer({ flushSize: 10, retry: { maxAttempts: 1 } }), (flow) =>
          flow.submitAll(Accounts, [
            { id: 2, email: "fresh@example.com" },
            { id: 3, email: "dup-owner@example.com" }
          ])
        )
        expect(run.failures).toHaveLength(1)
        const failure = run.failures[0]!
        expect(failure.reason).toBe("duplicate_key")
        expect(failure.rows).toEqual([{ id: 3, email: "dup-owner@example.com" }])
        // The driver's own text does quote the value: that is what must not leak.
        expect(failure.cause).toBeInstanceOf(Sql.SqlWriteError)
        expect((failure.cause as Sql.SqlWriteError).detail).toContain("'dup-owner@example.com'")
        const errors = logs.filter((l) => l.level === "ERROR")
        expect(errors).toHaveLength(1)
        for (const text of [errors[0]!.message, failure.message]) {
          expect(text).toContain("reason: duplicate_key")
          expect(text).toContain("Duplicate entry '***' for key")
          expect(text).toContain("[1062]")
          expect(text).not.toContain("dup-owner@example.com")
        }
        expect(JSON.stringify(logs)).not.toContain("dup-owner@example.com")
      }).pipe(Effect.provide(mysqlClient()))
    )
  })

  it.effect("InvalidRow names the expected type and the type given, never the value", () =>
    Effect.gen(function* () {
      const { flow, closeScope } = yield* startFlow({}, BatchExecutor.memory())
      const wrong = yield* Effect.flip(flow.submit(Users, { ...user(7), name: 987_654 } as unknown as User))
      expect(wrong).toMatchObject({
        field: "name",
        problem: "wrong_type",
        detail: "expected a string, got number"
      })
      expect(wrong.message).not.toContain("987654")

      const notFinite = yield* Effect.flip(flow.submit(Users, { ...user(8), id: Number.NaN }))
      expect(notFinite).toMatchObject({
        field: "id",
        problem: "not_finite",
        detail: "got a non-finite number"
      })
      expect(notFinite.message).not.toContain("NaN")

      const Scores = Target.make("r_scores", {
        schema: Schema.Struct({ score: Schema.Int, tag: Schema.optional(Schema.Literal("a", "b")) })
      })
      expect(Scores.validate({ score: 12.75 })).toMatchObject({
        field: "score",
        problem: "wrong_type",
        detail: "expected an integer, got a number that is not"
      })
      expect(Scores.validate({ score: 1, tag: "zzz" })?.detail).toBe(
        'expected "a" | "b" | undefined, got string'
      )

      const extra = yield* Effect.flip(
        flow.submitAll(Users, [user(9), { ...user(10), token: "tok-secret-10" } as unknown as User])
      )
      expect(extra).toMatchObject({ field: "token", problem: "extra", index: 1 })
      expect(extra.message).not.toContain("tok-secret-10")
      yield* closeScope()
    })
  )
})

describe("with logRowValues, rows are shown with the sensitive columns redacted", () => {
  it.effect("the log line shows up to 3 rows, password and email [REDACTED], the rest visible", () =>
    Effect.gen(function* () {
      const rows = [user(11), user(12), user(13), user(14)]
      const { logs, failures } = yield* failWith({ logRowValues: true }, failingWith(duplicateEntry), rows)
      expect(logs).toHaveLength(1)
      const log = logs[0]!.message
      expect(log).toContain("reason: non_retryable")
      expect(log).toContain(
        "Duplicate entry '[REDACTED]' for key 'r_users.email_unique' (user carol-11, id 40011)"
      )
      expect(log).toContain(
        `First 3 of 4 rows: {"id":40011,"name":"carol-11","email":"[REDACTED]","password":"[REDACTED]"}, {"id":40012,"name":"carol-12"`
      )
      expect(log).toContain("carol-13")
      expect(log).not.toContain("carol-14")
      for (const row of rows) {
        expect(log).not.toContain(row.email)
        expect(log).not.toContain(row.password)
      }
      // The message carries the driver's text (sensitive values redacted), not the rows.
      const message = failures[0]!.message
      expect(message).toContain("(user carol-11, id 40011)")
      expect(message).toContain("'[REDACTED]'")
      expect(message).not.toContain("First 3")
      expect(message).not.toContain("alice11@example.com")
    })
  )

  it.effect(
    "a custom sensitiveColumns list replaces the default, matched case-insensitively by substring",
    () =>
      Effect.gen(function* () {
        const rows = [user(15)]
        const { logs } = yield* failWith(
          { logRowValues: true, sensitiveColumns: ["NAME"] },
          failingWith(duplicateEntry),
          rows
        )
        const log = logs[0]!.message
        expect(log).toContain(
          `Row: {"id":40015,"name":"[REDACTED]","email":"alice15@example.com","password":"hunter2-15"}`
        )
        expect(log).toContain(
          "Duplicate entry 'alice15@example.com' for key 'r_users.email_unique' (user [REDACTED],"
        )
        expect(log).not.toContain("carol-15")

        const Contacts = Target.make("r_contacts", {
          schema: Schema.Struct({ id: Schema.Number, User_EMAIL: Schema.String, city: Schema.String })
        })
        const contact = { id: 1, User_EMAIL: "bob@example.com", city: "Lisbon" }
        const contactLogs = yield* capturing((logs) =>
          Effect.gen(function* () {
            const { flow, closeScope } = yield* startFlow(
              { flushSize: 100, flushInterval: "1 hour", retry: { maxAttempts: 1 }, logRowValues: true },
              BatchExecutor.make(() => Effect.fail(new Error("rejected")))
            )
            yield* flow.submit(Contacts, contact)
            yield* closeScope()
            return logs
          })
        )
        expect(contactLogs[0]!.message).toContain(`Row: {"id":1,"User_EMAIL":"[REDACTED]","city":"Lisbon"}`)
      })
  )

  it.effect("InvalidRow shows the value, or [REDACTED] for a sensitive field", () =>
    Effect.gen(function* () {
      const { flow, closeScope } = yield* startFlow({ logRowValues: true }, BatchExecutor.memory())
      const wrongName = yield* invalidRow(
        flow.submit(Users, { ...user(16), name: 987_654 } as unknown as User)
      )
      expect(wrongName.detail).toBe("expected a string, got number (value: 987654)")
      expect(wrongName.message).toContain("(value: 987654)")

      const wrongPassword = yield* invalidRow(
        flow.write(Users, { ...user(17), password: 123_456 } as unknown as User)
      )
      expect(wrongPassword.detail).toBe("expected a string, got number (value: [REDACTED])")
      expect(wrongPassword.message).not.toContain("123456")

      const inBatch = yield* Effect.flip(
        flow.submitAll(Users, [user(18), { ...user(19), id: Number.POSITIVE_INFINITY }])
      )
      expect(inBatch).toMatchObject({
        field: "id",
        index: 1,
        detail: "got a non-finite number (value: Infinity)"
      })
      yield* closeScope()
    })
  )

  it.effect("InvalidRow without logRowValues but with a custom list still shows no value", () =>
    Effect.gen(function* () {
      const { flow, closeScope } = yield* startFlow({ sensitiveColumns: ["x"] }, BatchExecutor.memory())
      const error = yield* invalidRow(flow.submit(Users, { ...user(20), name: 987_654 } as unknown as User))
      expect(error.detail).toBe("expected a string, got number")
      yield* closeScope()
    })
  )
})

describe("configuration of logRowValues and sensitiveColumns", () => {
  const env = (entries: Record<string, string>) =>
    ConfigProvider.fromMap(new Map(Object.entries(entries)), { pathDelim: "_" })

  it.effect("defaults: row values off; password, token, secret, email, phone sensitive", () =>
    Effect.gen(function* () {
      const config = yield* BatchFlowConfig.make()
      expect(config.logRowValues).toBe(false)
      expect(config.sensitiveColumns).toEqual(["password", "token", "secret", "email", "phone"])
      expect(yield* BatchFlowConfig.make({ logRowValues: true, sensitiveColumns: [" ssn "] })).toMatchObject({
        logRowValues: true,
        sensitiveColumns: ["ssn"]
      })
      expect((yield* BatchFlowConfig.make({ sensitiveColumns: [] })).sensitiveColumns).toEqual([])
    })
  )

  it.effect("invalid values fail with BatchFlowConfigError naming the field", () =>
    Effect.gen(function* () {
      const cases: ReadonlyArray<readonly [BatchFlowConfig.Options, string]> = [
        [{ logRowValues: "yes" as unknown as boolean }, "logRowValues"],
        [{ sensitiveColumns: ["password", ""] }, "sensitiveColumns"],
        [{ sensitiveColumns: ["  "] }, "sensitiveColumns"],
        [{ sensitiveColumns: "password" as unknown as ReadonlyArray<string> }, "sensitiveColumns"],
        [{ sensitiveColumns: [1] as unknown as ReadonlyArray<string> }, "sensitiveColumns"]
      ]
      for (const [options, field] of cases) {
        const error = yield* Effect.flip(BatchFlowConfig.make(options))
        expect(error).toBeInstanceOf(BatchFlowError.BatchFlowConfigError)
        expect(error.field).toBe(field)
        expect(error.message).toContain(`${field} must be`)
      }
    })
  )

  it.effect("BATCHFLOW_LOG_ROW_VALUES and BATCHFLOW_SENSITIVE_COLUMNS are read from the environment", () =>
    Effect.gen(function* () {
      const options = yield* Effect.withConfigProvider(
        BatchFlowConfig.config,
        env({ BATCHFLOW_LOG_ROW_VALUES: "true", BATCHFLOW_SENSITIVE_COLUMNS: "ssn, card_number" })
      )
      expect(options.logRowValues).toBe(true)
      const config = yield* BatchFlowConfig.make(options)
      expect(config.sensitiveColumns).toEqual(["ssn", "card_number"])

      const unset = yield* Effect.withConfigProvider(BatchFlowConfig.config, env({}))
      expect(unset.logRowValues).toBeUndefined()
      expect(unset.sensitiveColumns).toBeUndefined()

      const unreadable = yield* Effect.flip(
        Effect.withConfigProvider(BatchFlowConfig.config, env({ BATCHFLOW_LOG_ROW_VALUES: "maybe" }))
      )
      expect(ConfigError.isInvalidData(unreadable)).toBe(true)
    })
  )
})
