/**
 * A plain `node:http` service that batches what it receives into PostgreSQL with the Promise
 * facade: no Effect in sight. `POST /events` with a JSON row answers 202 once the row is accepted,
 * 400 for a row that does not match the table, 503 when the buffer stayed full for 50 ms (shed the
 * load: the client retries later) or the service is shutting down. On SIGTERM it stops accepting
 * connections, waits for the requests in progress, closes the flow (every accepted row written),
 * ends its pool and exits 0.
 *
 *   BATCHFLOW_PG_URL=postgres://postgres@127.0.0.1:5432/test PORT=8080 npx tsx examples/promise-http-server.ts
 *
 * `EVENTS_TABLE` names the table (default `http_events`, created if missing); `PORT=0` picks a free
 * port. The port is printed as `listening on <port>`.
 */
import { createServer, type IncomingMessage } from "node:http"
import {
  BatchFlowClosed,
  BufferFull,
  Conflict,
  createBatchFlow,
  InvalidRow,
  type RowOf,
  Schema,
  Table
} from "effect-batchflow/promise"
import pg from "pg"

const url = process.env.BATCHFLOW_PG_URL ?? "postgres://postgres@127.0.0.1:5432/test"
const tableName = process.env.EVENTS_TABLE ?? "http_events"
if (!/^[a-z_][a-z0-9_]*$/.test(tableName))
  throw new Error(`EVENTS_TABLE must be a plain SQL name, not ${tableName}`)

const Events = Table.make(tableName, {
  columns: Schema.Struct({ id: Schema.Number, kind: Schema.String, amount: Schema.Number }),
  conflict: Conflict.ignore, // a client that retries after a lost answer writes its row once
  key: ["id"]
})

// The application's own pool: the flow writes through it and leaves it open on close.
const pool = new pg.Pool({ connectionString: url, max: 4 })
await pool.query(
  `CREATE TABLE IF NOT EXISTS ${tableName} (id BIGINT PRIMARY KEY, kind TEXT NOT NULL, amount DOUBLE PRECISION NOT NULL)`
)

const flow = await createBatchFlow({
  backend: { type: "postgres", pool },
  flushSize: 500,
  flushInterval: "50 millis",
  submitTimeout: "50 millis"
})
flow.onFailure((failure) => {
  console.error(`not written: ${failure.rows.length} row(s) of ${failure.target} (${failure.reason})`)
})

const readBody = async (request: IncomingMessage): Promise<string> => {
  const chunks: Array<Buffer> = []
  for await (const chunk of request) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString("utf8")
}

const server = createServer(async (request, response) => {
  const reply = (status: number, body: string) => {
    response.writeHead(status, { "content-type": "text/plain" }).end(`${body}\n`)
  }
  if (request.method !== "POST" || request.url !== "/events") return reply(404, "POST /events")
  let row: unknown
  try {
    row = JSON.parse(await readBody(request))
  } catch {
    return reply(400, "the body must be JSON")
  }
  try {
    // The row's type comes from the table; what a client sends is checked by the flow itself.
    await flow.submit(Events, row as RowOf<typeof Events>)
    reply(202, "accepted")
  } catch (error) {
    if (error instanceof InvalidRow) reply(400, error.message)
    else if (error instanceof BufferFull) reply(503, "busy, retry later")
    else if (error instanceof BatchFlowClosed) reply(503, "shutting down")
    else reply(500, "internal error")
  }
})

server.listen(Number(process.env.PORT ?? 8080), () => {
  const address = server.address()
  console.log(`listening on ${typeof address === "object" && address !== null ? address.port : address}`)
})

process.once("SIGTERM", () => {
  // Stop accepting; the callback runs when the requests in progress have been answered.
  server.close(async () => {
    await flow.close() // every accepted row written (or reported), within closeTimeout
    await pool.end()
    console.log(`closed: ${flow.stats().committed} rows written`)
    process.exit(0)
  })
})
