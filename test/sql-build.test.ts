/**
 * Statement building without a database: the exact SQL per dialect and mode (pinned), dedupe rules,
 * identifier checks, fingerprints, splitting at the parameter limits and value conversion.
 */
import { describe, expect, it } from "@effect/vitest"
import { Either, Schema } from "effect"
import * as Conflict from "effect-batchflow/Conflict"
import * as Sql from "effect-batchflow/Sql"
import * as Table from "effect-batchflow/Table"

const columns = Schema.Struct({ id: Schema.Number, name: Schema.String, email: Schema.String })
const rows = [
  { id: 1, name: "a", email: "a@x" },
  { id: 2, name: "b", email: "b@x" },
  { id: 1, name: "c", email: "c@x" }
]

const tables = {
  none: Table.make("users", { columns, conflict: Conflict.none, key: ["id"] }),
  ignore: Table.make("users", { columns, conflict: Conflict.ignore, key: ["id"] }),
  replace: Table.make("users", { columns, conflict: Conflict.replace, key: ["id"] }),
  update: Table.make("users", { columns, conflict: Conflict.update({ target: ["id"], set: ["name"] }) })
}

const cols = `"id", "name", "email"`
const pgJson = `INSERT INTO "users" (${cols}) SELECT ${cols} FROM json_populate_recordset(NULL::"users", $1::json)`
const pinned: Record<keyof typeof tables, Record<"pg" | "pgValues" | "mysql" | "sqlite", string>> = {
  none: {
    pg: pgJson,
    pgValues: `INSERT INTO "users" (${cols}) VALUES ($1, $2, $3), ($4, $5, $6), ($7, $8, $9)`,
    mysql: "INSERT INTO `users` (`id`, `name`, `email`) VALUES (?, ?, ?), (?, ?, ?), (?, ?, ?)",
    sqlite: `INSERT INTO "users" (${cols}) VALUES (?, ?, ?), (?, ?, ?), (?, ?, ?)`
  },
  ignore: {
    pg: `${pgJson} ON CONFLICT ("id") DO NOTHING`,
    pgValues: `INSERT INTO "users" (${cols}) VALUES ($1, $2, $3), ($4, $5, $6) ON CONFLICT ("id") DO NOTHING`,
    mysql: "INSERT IGNORE INTO `users` (`id`, `name`, `email`) VALUES (?, ?, ?), (?, ?, ?)",
    sqlite: `INSERT OR IGNORE INTO "users" (${cols}) VALUES (?, ?, ?), (?, ?, ?)`
  },
  replace: {
    pg: `${pgJson} ON CONFLICT ("id") DO UPDATE SET "name" = EXCLUDED."name", "email" = EXCLUDED."email"`,
    pgValues: `INSERT INTO "users" (${cols}) VALUES ($1, $2, $3), ($4, $5, $6) ON CONFLICT ("id") DO UPDATE SET "name" = EXCLUDED."name", "email" = EXCLUDED."email"`,
    mysql: "REPLACE INTO `users` (`id`, `name`, `email`) VALUES (?, ?, ?), (?, ?, ?)",
    sqlite: `INSERT OR REPLACE INTO "users" (${cols}) VALUES (?, ?, ?), (?, ?, ?)`
  },
  update: {
    pg: `${pgJson} ON CONFLICT ("id") DO UPDATE SET "name" = EXCLUDED."name"`,
    pgValues: `INSERT INTO "users" (${cols}) VALUES ($1, $2, $3), ($4, $5, $6) ON CONFLICT ("id") DO UPDATE SET "name" = EXCLUDED."name"`,
    mysql:
      "INSERT INTO `users` (`id`, `name`, `email`) VALUES (?, ?, ?), (?, ?, ?) ON DUPLICATE KEY UPDATE `name` = VALUES(`name`)",
    sqlite: `INSERT INTO "users" (${cols}) VALUES (?, ?, ?), (?, ?, ?) ON CONFLICT ("id") DO UPDATE SET "name" = excluded."name"`
  }
}

const fingerprints: Record<keyof typeof tables, Record<"pg" | "pgValues" | "mysql" | "sqlite", string>> = {
  none: {
    pg: "273ba4ca4035c3d4",
    pgValues: "f8dcef8eeb53b441",
    mysql: "701a5d0db3cc9967",
    sqlite: "d53156c7fe6bb09f"
  },
  ignore: {
    pg: "91e4ab4f71374a97",
    pgValues: "aa7a17f0f01896ea",
    mysql: "98b81b7028d96589",
    sqlite: "48049b5b74cc5e2a"
  },
  replace: {
    pg: "aa921269a2df509b",
    pgValues: "45eb0fa8d55caa4a",
    mysql: "d20342311075ec04",
    sqlite: "92ef66e99dad82ea"
  },
  update: {
    pg: "37c3e94716534a4e",
    pgValues: "115d1c2049e7bc7f",
    mysql: "b9bc7bd754fc0807",
    sqlite: "3be2d74cd047a659"
  }
}

describe("Sql.preview: the statement per dialect and mode", () => {
  for (const mode of ["none", "ignore", "replace", "update"] as const) {
    for (const variant of ["pg", "pgValues", "mysql", "sqlite"] as const) {
      it(`${mode} on ${variant}`, () => {
        const dialect = variant === "pgValues" ? "pg" : variant
        const options = variant === "pgValues" ? { pgForm: "values" as const } : {}
        const preview = Sql.preview(dialect, tables[mode], rows, options)
        const out = mode === "none" ? 3 : 2
        expect(preview.sql).toBe(pinned[mode][variant])
        expect(preview.statements).toHaveLength(1)
        expect(preview.argCount).toBe(variant === "pg" ? 1 : out * 3)
        expect(preview.dedupe).toEqual({ rowsIn: 3, rowsOut: out, nullKeys: 0 })
        expect(preview.mode).toBe(mode)
        expect(preview.conflictTarget).toEqual(["id"])
        expect(preview.fingerprint).toBe(fingerprints[mode][variant])
      })
    }
  }

  it("the merged rows: ignore keeps the first, replace the last, update merges the set columns", () => {
    const args = (mode: keyof typeof tables) => Sql.preview("sqlite", tables[mode], rows).statements[0]!.args
    expect(args("ignore")).toEqual([1, "a", "a@x", 2, "b", "b@x"])
    expect(args("replace")).toEqual([1, "c", "c@x", 2, "b", "b@x"])
    expect(args("update")).toEqual([1, "c", "a@x", 2, "b", "b@x"])
    expect(JSON.parse(Sql.preview("pg", tables.update, rows).statements[0]!.args[0] as string)).toEqual([
      { id: 1, name: "c", email: "a@x" },
      { id: 2, name: "b", email: "b@x" }
    ])
  })

  it("the fingerprint does not vary with the batch size", () => {
    const many = Array.from({ length: 500 }, (_, i) => ({ id: i, name: `n${i}`, email: "e" }))
    for (const dialect of ["pg", "mysql", "sqlite"] as const) {
      const one = Sql.preview(dialect, tables.ignore, many.slice(0, 1))
      const all = Sql.preview(dialect, tables.ignore, many)
      expect(all.fingerprint).toBe(one.fingerprint)
      expect(all.fingerprint).toBe(Sql.fingerprint(dialect, tables.ignore))
    }
    expect(Sql.fingerprint("pg", tables.ignore)).not.toBe(Sql.fingerprint("pg", tables.update))
  })

  it("ignore without a key: PostgreSQL has no conflict target and nothing is merged", () => {
    const t = Table.make("events", { columns, conflict: Conflict.ignore })
    const preview = Sql.preview("pg", t, rows)
    expect(preview.sql).toBe(
      `INSERT INTO "events" (${cols}) SELECT ${cols} FROM json_populate_recordset(NULL::"events", $1::json) ON CONFLICT DO NOTHING`
    )
    expect(preview.dedupe).toEqual({ rowsIn: 3, rowsOut: 3, nullKeys: 0 })
  })

  it("schema-qualified names are quoted part by part", () => {
    const t = Table.make("app.users", { columns, conflict: Conflict.ignore, key: ["id"] })
    expect(Sql.preview("mysql", t, rows.slice(0, 1)).sql).toBe(
      "INSERT IGNORE INTO `app`.`users` (`id`, `name`, `email`) VALUES (?, ?, ?)"
    )
    expect(Sql.preview("pg", t, rows.slice(0, 1)).sql).toContain(`NULL::"app"."users"`)
  })

  it("reserved words as names are fine: they are always quoted", () => {
    const t = Table.make("order", {
      columns: Schema.Struct({ select: Schema.Number, from: Schema.String }),
      conflict: Conflict.update({ target: ["select"] })
    })
    expect(Sql.preview("sqlite", t, [{ select: 1, from: "x" }]).sql).toBe(
      `INSERT INTO "order" ("select", "from") VALUES (?, ?) ON CONFLICT ("select") DO UPDATE SET "from" = excluded."from"`
    )
  })

  it("no rows: no statement", () => {
    const preview = Sql.preview("mysql", tables.ignore, [])
    expect(preview.statements).toEqual([])
    expect(preview.sql).toBe("")
    expect(preview.argCount).toBe(0)
  })
})

describe("in-batch dedupe", () => {
  const Nullable = Schema.Struct({ code: Schema.NullOr(Schema.String), v: Schema.Number })

  it("rows whose key is NULL are never merged", () => {
    const input = [
      { code: null, v: 1 },
      { code: null, v: 2 },
      { code: "a", v: 3 },
      { code: "a", v: 4 }
    ]
    for (const conflict of [Conflict.ignore, Conflict.replace]) {
      const t = Table.make("codes", { columns: Nullable, conflict, key: ["code"] })
      const preview = Sql.preview("sqlite", t, input)
      expect(preview.dedupe).toEqual({ rowsIn: 4, rowsOut: 3, nullKeys: 2 })
      expect(preview.statements[0]!.args).toEqual(
        conflict === Conflict.ignore ? [null, 1, null, 2, "a", 3] : [null, 1, null, 2, "a", 4]
      )
    }
  })

  it("increasing keys (the common case) are kept as they are; a key seen again after them is merged", () => {
    const Ids = Schema.Struct({ id: Schema.NullOr(Schema.Number), v: Schema.Number })
    const t = Table.make("ids", { columns: Ids, conflict: Conflict.replace, key: ["id"] })
    const increasing = [
      { id: 1, v: 1 },
      { id: null, v: 2 },
      { id: 5, v: 3 },
      { id: 9, v: 4 }
    ]
    const kept = Sql.preview("sqlite", t, increasing)
    expect(kept.dedupe).toEqual({ rowsIn: 4, rowsOut: 4, nullKeys: 1 })
    expect(kept.statements[0]!.args).toEqual([1, 1, null, 2, 5, 3, 9, 4])
    const repeated = Sql.preview("sqlite", t, [...increasing, { id: 5, v: 5 }])
    expect(repeated.dedupe).toEqual({ rowsIn: 5, rowsOut: 4, nullKeys: 1 })
    expect(repeated.statements[0]!.args).toEqual([1, 1, null, 2, 5, 5, 9, 4])
  })

  it("ignore: keys that stop increasing are still compared with every earlier key", () => {
    const Ids = Schema.Struct({
      id: Schema.NullOr(Schema.Union(Schema.Number, Schema.String)),
      v: Schema.Number
    })
    const t = Table.make("ids", { columns: Ids, conflict: Conflict.ignore, key: ["id"] })
    const rows = [
      { id: 5, v: 1 },
      { id: 7, v: 2 },
      { id: null, v: 3 },
      { id: 2, v: 4 }, // no longer increasing, not seen before: kept
      { id: 7, v: 5 }, // seen before the keys stopped increasing: dropped
      { id: "7", v: 6 }, // a string is another key than the number 7
      { id: null, v: 7 },
      { id: 2, v: 8 } // dropped
    ]
    const preview = Sql.preview("sqlite", t, rows)
    expect(preview.dedupe).toEqual({ rowsIn: 8, rowsOut: 6, nullKeys: 2 })
    expect(preview.statements[0]!.args).toEqual([5, 1, 7, 2, null, 3, 2, 4, "7", 6, null, 7])
    // Strictly increasing string keys: nothing to drop, the batch goes as it is.
    const named = Sql.preview("sqlite", t, [
      { id: "a", v: 1 },
      { id: "b", v: 2 },
      { id: "c", v: 3 }
    ])
    expect(named.dedupe).toEqual({ rowsIn: 3, rowsOut: 3, nullKeys: 0 })
  })

  it("composite keys compare every part, and keep types apart", () => {
    const t = Table.make("pairs", {
      columns: Schema.Struct({
        a: Schema.Union(Schema.Number, Schema.String),
        b: Schema.Number,
        v: Schema.Number
      }),
      conflict: Conflict.update({ target: ["a", "b"], set: ["v"] })
    })
    const preview = Sql.preview("mysql", t, [
      { a: 1, b: 1, v: 1 },
      { a: 1, b: 2, v: 2 },
      { a: "1", b: 1, v: 3 },
      { a: 1, b: 1, v: 4 }
    ])
    expect(preview.dedupe.rowsOut).toBe(3)
    expect(preview.statements[0]!.args).toEqual([1, 1, 4, 1, 2, 2, "1", 1, 3])
  })

  it("dates and bytes in a key compare by value", () => {
    const t = Table.make("stamps", {
      columns: Schema.Struct({ at: Schema.DateFromSelf, v: Schema.Number }),
      conflict: Conflict.ignore,
      key: ["at"]
    })
    const preview = Sql.preview("sqlite", t, [
      { at: new Date(0), v: 1 },
      { at: new Date(0), v: 2 }
    ])
    expect(preview.dedupe.rowsOut).toBe(1)
  })

  it("a missing optional column is written as NULL", () => {
    const t = Table.make("opt", {
      columns: Schema.Struct({ id: Schema.Number, note: Schema.optional(Schema.String) }),
      conflict: Conflict.none
    })
    expect(Sql.preview("mysql", t, [{ id: 1 }, { id: 2, note: "x" }]).statements[0]!.args).toEqual([
      1,
      null,
      2,
      "x"
    ])
  })
})

describe("Table.make rejects what it cannot quote safely", () => {
  const invalid = (
    name: string,
    options: Table.Options<Record<string, unknown>, Record<string, unknown>>
  ) => {
    const result = Table.makeEither(name, options)
    if (Either.isRight(result)) throw new Error(`accepted ${name}`)
    return result.left
  }
  const plain = Schema.Struct({ id: Schema.Number }) as unknown as Schema.Schema<
    Record<string, unknown>,
    Record<string, unknown>
  >

  for (const name of [
    "users; DROP TABLE users",
    'users"',
    "users`",
    "a.b.c",
    "",
    "1users",
    "us ers",
    "usérs",
    "x".repeat(64),
    "users--",
    ".users"
  ]) {
    it(`table name ${JSON.stringify(name)}`, () => {
      const error = invalid(name, { columns: plain })
      expect(error._tag).toBe("InvalidTable")
      expect(error.field).toBe("name")
      expect(error.message).toContain("plain identifier")
    })
  }

  for (const column of ['id"', "na me", "a;b", "x".repeat(64), "1a", "c`"]) {
    it(`column name ${JSON.stringify(column)}`, () => {
      const error = invalid("t", {
        columns: Schema.Struct({ [column]: Schema.String }) as unknown as Schema.Schema<
          Record<string, unknown>,
          Record<string, unknown>
        >
      })
      expect(error.field).toBe(`columns.${column}`)
    })
  }

  it("throws from make, with the field in the message", () => {
    expect(() => Table.make("bad name", { columns })).toThrow(
      /Invalid table "bad name": name must be a plain identifier/
    )
  })

  it("checks keys and conflict columns against the columns", () => {
    expect(invalid("t", { columns: plain, key: ["nope"] }).field).toBe("key")
    expect(invalid("t", { columns: plain, conflict: Conflict.replace }).field).toBe("key")
    expect(invalid("t", { columns: plain, conflict: Conflict.update({ target: [] }) }).field).toBe(
      "conflict.target"
    )
    expect(invalid("t", { columns: plain, conflict: Conflict.update({ target: ["x"] }) }).field).toBe(
      "conflict.target"
    )
    expect(invalid("t", { columns: plain, conflict: Conflict.update({ target: ["id"] }) }).detail).toContain(
      "nothing to update"
    )
    const two = Schema.Struct({ id: Schema.Number, v: Schema.Number }) as unknown as Schema.Schema<
      Record<string, unknown>,
      Record<string, unknown>
    >
    expect(
      invalid("t", { columns: two, conflict: Conflict.update({ target: ["id"], set: ["id"] }) }).field
    ).toBe("conflict.set")
    expect(
      invalid("t", { columns: two, conflict: Conflict.update({ target: ["id"], set: ["w"] }) }).field
    ).toBe("conflict.set")
    expect(
      invalid("t", { columns: two, key: ["v"], conflict: Conflict.update({ target: ["id"] }) }).field
    ).toBe("key")
  })

  it("needs a struct", () => {
    const notStruct = Schema.String as unknown as Schema.Schema<
      Record<string, unknown>,
      Record<string, unknown>
    >
    expect(invalid("t", { columns: notStruct }).field).toBe("columns")
  })

  it("a table is a target keyed by its conflict target", () => {
    expect(tables.update.key).toEqual(["id"])
    expect(tables.update.ordered).toBe(true)
    expect(tables.update.updateColumns).toEqual(["name"])
    expect(tables.replace.updateColumns).toEqual(["name", "email"])
    expect(Table.isTable(tables.none)).toBe(true)
    expect(Table.isTable({})).toBe(false)
    expect(tables.none.validate({ id: 1, name: "a", email: 3 })?.field).toBe("email")
  })
})

describe("statement limits", () => {
  const five = Schema.Struct({
    a: Schema.Number,
    b: Schema.Number,
    c: Schema.Number,
    d: Schema.Number,
    e: Schema.Number
  })
  const wide = Table.make("wide", { columns: five, conflict: Conflict.ignore, key: ["a"] })
  const many = Array.from({ length: 14_000 }, (_, i) => ({ a: i, b: i, c: i, d: i, e: i }))

  it("splits at each dialect's bind-parameter limit", () => {
    const sqlite = Sql.preview("sqlite", wide, many)
    expect(sqlite.statements.map((s) => s.rows)).toEqual([6553, 6553, 894])
    expect(Math.max(...sqlite.statements.map((s) => s.args.length))).toBeLessThanOrEqual(32_766)
    const mysql = Sql.preview("mysql", wide, many)
    expect(mysql.statements.map((s) => s.rows)).toEqual([13_107, 893])
    const pgValues = Sql.preview("pg", wide, many, { pgForm: "values" })
    expect(pgValues.statements.map((s) => s.rows)).toEqual([13_107, 893])
    expect(
      pgValues.statements[1]!.sql.startsWith(`INSERT INTO "wide" ("a", "b", "c", "d", "e") VALUES ($1, `)
    ).toBe(true)
    expect(Sql.preview("pg", wide, many).statements).toHaveLength(1)
    expect(sqlite.argCount).toBe(70_000)
  })

  it("maxParams can only lower the limit", () => {
    expect(
      Sql.preview("sqlite", wide, many.slice(0, 10), { maxParams: 20 }).statements.map((s) => s.rows)
    ).toEqual([4, 4, 2])
    expect(Sql.preview("sqlite", wide, many, { maxParams: 1_000_000 }).statements).toHaveLength(3)
  })

  it("splits by estimated size; a single bigger row goes alone", () => {
    const t = Table.make("blobs", {
      columns: Schema.Struct({ id: Schema.Number, body: Schema.String }),
      conflict: Conflict.none
    })
    const input = [
      { id: 1, body: "x".repeat(100) },
      { id: 2, body: "x".repeat(100) },
      { id: 3, body: "x".repeat(5000) },
      { id: 4, body: "x".repeat(100) }
    ]
    const preview = Sql.preview("pg", t, input, { maxStatementBytes: 1000 })
    expect(preview.statements.map((s) => s.rows)).toEqual([2, 1, 1])
    expect(preview.statements.every((s) => s.args.length === 1)).toBe(true)
  })

  it("the VALUES form cuts where the estimate says, to the byte (a whole batch is measured while bound)", () => {
    const t = Table.make("blobs", {
      columns: Schema.Struct({ id: Schema.Number, body: Schema.String }),
      conflict: Conflict.none
    })
    // Each row is estimated 4 + 24 (a number) + 100 × 3 + 4 (a string) = 332 bytes.
    const input = [1, 2, 3, 4].map((id) => ({ id, body: "x".repeat(100) }))
    for (const dialect of ["mysql", "sqlite"] as const) {
      const shape = (limit: number) =>
        Sql.preview(dialect, t, input, { maxStatementBytes: limit }).statements.map((s) => s.rows)
      let fits = 1
      while (shape(fits).length > 1) fits++
      expect(shape(fits)).toEqual([4])
      expect(shape(fits - 1)).toEqual([3, 1])
      expect(shape(fits - 332)).toEqual([3, 1])
      expect(shape(fits - 333)).toEqual([2, 2])
      expect(shape(1)).toEqual([1, 1, 1, 1])
    }
  })
})

describe("values reach each driver in a form it takes", () => {
  const Mixed = Table.make("mixed", {
    columns: Schema.Struct({
      id: Schema.BigIntFromSelf,
      flag: Schema.Boolean,
      at: Schema.DateFromSelf,
      bytes: Schema.Uint8ArrayFromSelf,
      doc: Schema.Unknown
    }),
    conflict: Conflict.none
  })
  const row = {
    id: 9007199254740993n,
    flag: true,
    at: new Date("2024-01-02T03:04:05.000Z"),
    bytes: new Uint8Array([0, 255, 16]),
    doc: { a: [1, "x"] }
  }

  it("SQLite: booleans as 1/0, dates as ISO text, bytes as a Buffer, objects as JSON", () => {
    const [id, flag, at, bytes, doc] = Sql.preview("sqlite", Mixed, [row]).statements[0]!.args
    expect(id).toBe(9007199254740993n)
    expect(flag).toBe(1)
    expect(at).toBe("2024-01-02T03:04:05.000Z")
    expect(Buffer.isBuffer(bytes)).toBe(true)
    expect([...(bytes as Buffer)]).toEqual([0, 255, 16])
    expect(doc).toBe('{"a":[1,"x"]}')
  })

  it("MySQL: bigints as digits, dates and Buffers to mysql2", () => {
    const [id, flag, at, bytes] = Sql.preview("mysql", Mixed, [row]).statements[0]!.args
    expect(id).toBe("9007199254740993")
    expect(flag).toBe(true)
    expect(at).toBeInstanceOf(Date)
    expect(Buffer.isBuffer(bytes)).toBe(true)
  })

  it("PostgreSQL json: bytes as bytea hex, bigints as digits, nested JSON kept", () => {
    const json = JSON.parse(Sql.preview("pg", Mixed, [row]).statements[0]!.args[0] as string)
    expect(json).toEqual([
      {
        id: "9007199254740993",
        flag: true,
        at: "2024-01-02T03:04:05.000Z",
        bytes: "\\x00ff10",
        doc: { a: [1, "x"] }
      }
    ])
  })

  it("schemas with transformations are written in their encoded form", () => {
    const t = Table.make("encoded", {
      columns: Schema.Struct({ id: Schema.Number, at: Schema.Date, n: Schema.NumberFromString }),
      conflict: Conflict.none
    })
    expect(Sql.preview("sqlite", t, [{ id: 1, at: new Date(0), n: 5 }]).statements[0]!.args).toEqual([
      1,
      "1970-01-01T00:00:00.000Z",
      "5"
    ])
  })
})
