/**
 * The README's MySQL / MariaDB quickstart: the SQLite quickstart's program with the MySQL client, flow
 * layer and DDL. Run by scripts/consumer-check.sh against the local test database.
 */
import { SqlClient } from "@effect/sql"
import { MysqlClient } from "@effect/sql-mysql2"
import { Effect, Redacted, Schema } from "effect"
import { BatchFlow } from "effect-batchflow"
import * as Conflict from "effect-batchflow/Conflict"
import * as Mysql from "effect-batchflow/Mysql"
import * as Table from "effect-batchflow/Table"

const Events = Table.make("quickstart_events", {
  columns: Schema.Struct({ id: Schema.Number, kind: Schema.String, amount: Schema.Number }),
  conflict: Conflict.ignore, // INSERT IGNORE
  key: ["id"]
})

const program = Effect.gen(function* () {
  const flow = yield* BatchFlow.BatchFlow
  for (let id = 1; id <= 10_000; id++) yield* flow.submit(Events, { id, kind: "click", amount: id % 7 }) // enqueue only
  yield* flow.write(Events, { id: 10_001, kind: "view", amount: 0 }) // resolves when committed
})

const createTable = Effect.flatMap(
  SqlClient.SqlClient,
  (sql) =>
    sql`CREATE TABLE IF NOT EXISTS quickstart_events (id BIGINT PRIMARY KEY, kind VARCHAR(20) NOT NULL, amount DOUBLE NOT NULL)`
)

const main = createTable.pipe(
  Effect.zipRight(Effect.provide(program, Mysql.layer({ flushSize: 500, concurrency: 4 }))),
  Effect.provide(
    MysqlClient.layer({ url: Redacted.make("mysql://root@127.0.0.1:3306/test"), maxConnections: 4 })
  )
)

Effect.runPromise(main).then(() => console.log("written"))
