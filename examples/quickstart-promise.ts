/**
 * The README's quickstart without Effect: the Promise facade on the user's own pg Pool. Run by
 * scripts/consumer-check.sh against the local test database.
 */
import { BatchFailure, Conflict, createBatchFlow, Schema, Table } from "effect-batchflow/promise"
import pg from "pg"

const Events = Table.make("promise_quickstart_events", {
  columns: Schema.Struct({ id: Schema.Number, kind: Schema.String, amount: Schema.Number }),
  conflict: Conflict.ignore, // ON CONFLICT ("id") DO NOTHING
  key: ["id"]
})

// Your own pool (or `{ type: "postgres", url }` for one the flow opens and closes).
const pool = new pg.Pool({ connectionString: "postgres://postgres@127.0.0.1:5432/test" })
await pool.query(
  "CREATE TABLE IF NOT EXISTS promise_quickstart_events (id BIGINT PRIMARY KEY, kind TEXT NOT NULL, amount DOUBLE PRECISION NOT NULL)"
)

const flow = await createBatchFlow({
  backend: { type: "postgres", pool },
  flushSize: 500,
  flushInterval: "100 millis",
  submitTimeout: "50 millis" // a submit that finds the buffer full this long rejects with BufferFull
})
flow.onFailure((failure) => console.error(`not written: ${failure.rows.length} rows (${failure.reason})`))

for (let id = 1; id <= 10_000; id++) await flow.submit(Events, { id, kind: "click", amount: id % 7 }) // enqueue only
try {
  await flow.write(Events, { id: 10_001, kind: "view", amount: 0 }) // resolves when committed
} catch (error) {
  if (error instanceof BatchFailure) console.error(error.reason, error.outcome)
}
console.log(flow.stats().committed) // 10001
await flow.close() // stops intake, writes the rest, waits for it; your pool stays open
await pool.end()
