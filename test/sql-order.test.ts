/**
 * Same-key ordering on PostgreSQL with 8 concurrent writers: 100,000 upserts over 100 keys with
 * increasing versions. A trigger rejects any update that would move a key's version backwards, so an
 * out-of-order write would fail the test, not just be overwritten later.
 */

import * as SqlClient from "@effect/sql/SqlClient"
import { describe, expect, it } from "@effect/vitest"
import { Effect, Schema } from "effect"
import * as Conflict from "effect-batchflow/Conflict"
import * as Postgres from "effect-batchflow/Postgres"
import * as Table from "effect-batchflow/Table"
import { num, pgClient, recreate, runFlow, selectAll } from "./sql-helpers.js"

const table = "sql_order_versions"
const Versions = Table.make(table, {
  columns: Schema.Struct({ k: Schema.Number, version: Schema.Number }),
  conflict: Conflict.update({ target: ["k"], set: ["version"] })
})

describe("pg: ordering", () => {
  it.live(
    "100,000 upserts over 100 keys with concurrency 8: every key ends at its last version, never moving back",
    () =>
      Effect.gen(function* () {
        const sql = yield* SqlClient.SqlClient
        yield* recreate(table, `CREATE TABLE ${table} (k INT PRIMARY KEY, version BIGINT NOT NULL)`)
        yield* sql.unsafe(`CREATE OR REPLACE FUNCTION ${table}_forward() RETURNS trigger AS $$
          BEGIN
            IF NEW.version < OLD.version THEN
              RAISE EXCEPTION 'version of key % moved back from % to %', NEW.k, OLD.version, NEW.version;
            END IF;
            RETURN NEW;
          END $$ LANGUAGE plpgsql`)
        yield* sql.unsafe(
          `CREATE TRIGGER ${table}_forward BEFORE UPDATE ON ${table} FOR EACH ROW EXECUTE FUNCTION ${table}_forward()`
        )
        const run = yield* runFlow(
          Postgres.layer({ concurrency: 8, flushSize: 500, bufferSize: 10_000 }),
          (flow) =>
            Effect.gen(function* () {
              for (let i = 0; i < 100_000; i++) yield* flow.submit(Versions, { k: i % 100, version: i })
            })
        )
        expect(run.failures).toEqual([])
        expect(run.stats.committed).toBe(100_000)
        const rows = yield* selectAll<Record<string, unknown>>(table, "k")
        expect(rows.map((r) => [num(r.k), num(r.version)])).toEqual(
          Array.from({ length: 100 }, (_, k) => [k, 99_900 + k])
        )
        yield* sql.unsafe(`DROP TABLE ${table}`)
        yield* sql.unsafe(`DROP FUNCTION ${table}_forward()`)
      }).pipe(Effect.provide(pgClient(8))),
    120_000
  )
})
