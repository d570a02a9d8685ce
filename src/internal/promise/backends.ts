/**
 * The flow layer of each backend the Promise facade accepts. Every backend's modules are imported
 * when that backend is asked for, so a program that writes to PostgreSQL needs neither ioredis nor
 * better-sqlite3 installed (they are optional peer dependencies).
 */
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Redacted from "effect/Redacted"
import type * as BatchFlow from "../../BatchFlow.js"
import type * as BatchFlowConfig from "../../BatchFlowConfig.js"
import type { Backend } from "./api.js"

/** @internal */
export type FlowLayer = Layer.Layer<BatchFlow.BatchFlow, unknown>

/** @internal */
export const layerOf = async (backend: Backend, flowOptions: BatchFlowConfig.Options): Promise<FlowLayer> => {
  switch (backend.type) {
    case "postgres": {
      const [{ PgClient }, Postgres] = await Promise.all([
        import("@effect/sql-pg"),
        import("../../Postgres.js")
      ])
      const flow = Postgres.layer({
        ...flowOptions,
        pgForm: backend.pgForm,
        maxParams: backend.maxParams,
        maxStatementBytes: backend.maxStatementBytes
      })
      const client =
        "pool" in backend
          ? PgClient.layerFromPool({
              // The user's pool: acquired as it is, never ended (no release).
              acquire: Effect.succeed(backend.pool as never)
            })
          : PgClient.layer({ url: Redacted.make(backend.url), maxConnections: backend.maxConnections })
      return flow.pipe(Layer.provide(client))
    }
    case "mysql": {
      const Mysql = await import("../../Mysql.js")
      const flow = Mysql.layer({
        ...flowOptions,
        maxParams: backend.maxParams,
        maxStatementBytes: backend.maxStatementBytes
      })
      if ("pool" in backend) {
        const { layer } = await import("./mysqlPool.js")
        return flow.pipe(Layer.provide(layer(backend.pool)))
      }
      const { MysqlClient } = await import("@effect/sql-mysql2")
      return flow.pipe(
        Layer.provide(
          MysqlClient.layer({ url: Redacted.make(backend.url), maxConnections: backend.maxConnections })
        )
      )
    }
    case "sqlite": {
      const Sqlite = await import("../../Sqlite.js")
      const flow = Sqlite.layer({
        ...flowOptions,
        maxParams: backend.maxParams,
        maxStatementBytes: backend.maxStatementBytes
      })
      if ("database" in backend) {
        const { layer } = await import("./sqliteDatabase.js")
        return flow.pipe(Layer.provide(layer(backend.database)))
      }
      const { SqliteClient } = await import("@effect/sql-sqlite-node")
      return flow.pipe(Layer.provide(SqliteClient.layer({ filename: backend.filename })))
    }
    case "redis": {
      const Redis = await import("../../Redis.js")
      const flow = Redis.layer({ ...flowOptions, transaction: backend.transaction, fusion: backend.fusion })
      return flow.pipe(Layer.provide(Redis.layerClient(redisClientOptions(backend))))
    }
    case "custom": {
      const [BatchExecutor, BatchFlowModule] = await Promise.all([
        import("../../BatchExecutor.js"),
        import("../../BatchFlow.js")
      ])
      const { write } = backend
      // One function over every target: `write(target, rows)`.
      const sink = BatchExecutor.forAll({
        rules: [],
        execute: (target, rows) =>
          Effect.tryPromise({ try: () => write(target, rows), catch: (error) => error })
      })
      return BatchFlowModule.layer({ ...flowOptions, executors: [sink] })
    }
  }
}

/** What is read of an ioredis client's options to open the flow's own connection like it. */
interface IoredisOptions {
  readonly host?: string | undefined
  readonly port?: number | undefined
  readonly db?: number | undefined
  readonly username?: string | null | undefined
  readonly password?: string | null | undefined
}

/**
 * A user's ioredis client is not written through: the flow needs a connection that never re-sends
 * unanswered commands after a reconnect and has no offline queue (so that every write's outcome is
 * known, or known to be unknown), which a shared client would not have. It opens its own connection
 * with the client's options (host, port, db, credentials, TLS, the rest of ioredis' options) and
 * leaves the client alone.
 */
const redisClientOptions = (backend: Extract<Backend, { readonly type: "redis" }>) => {
  if ("client" in backend) {
    const options = (backend.client as { readonly options: IoredisOptions }).options
    return {
      ioredis: options as never,
      host: options.host,
      port: options.port,
      db: options.db ?? 0,
      username: typeof options.username === "string" ? options.username : undefined,
      password: typeof options.password === "string" ? Redacted.make(options.password) : undefined
    }
  }
  return { url: backend.url, db: backend.db }
}
