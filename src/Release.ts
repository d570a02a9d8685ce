/**
 * Releasing database clients within a deadline, so that a process can exit after its flow closed
 * even when the server no longer answers.
 *
 * The flow's own close keeps `closeTimeout`, whatever the driver does. The client layers are another
 * matter: against a server that accepts connections and never answers (a black hole: a hung host, a
 * dead proxy), @effect/sql-mysql2's pool end waits for ever, @effect/sql-pg's waits 1 s and then
 * leaves its sockets open, and an open socket keeps Node running. `bounded` gives the release of a
 * layer a deadline, and the sockets made through `sockets()` are destroyed once it passes, so
 * nothing is left to keep the process alive.
 *
 * @example
 * ```ts
 * import { PgClient } from "@effect/sql-pg"
 * import { Layer, Redacted } from "effect"
 * import * as Postgres from "effect-batchflow/Postgres"
 * import * as Release from "effect-batchflow/Release"
 *
 * const sockets = Release.sockets()
 * const Client = Release.bounded(
 *   PgClient.layer({ url: Redacted.make("postgres://postgres@127.0.0.1:5432/test"), stream: sockets.pg }),
 *   { timeout: "2 seconds", sockets }
 * )
 * const FlowLive = Postgres.layer({ closeTimeout: "5 seconds" }).pipe(Layer.provideMerge(Client))
 * ```
 *
 * @since 0.1.0
 */
import * as net from "node:net"
import type * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Fiber from "effect/Fiber"
import * as Layer from "effect/Layer"
import * as Scope from "effect/Scope"

/**
 * The sockets a driver opened, made through one of the factories, so that they can be destroyed.
 *
 * @since 0.1.0
 * @category models
 */
export interface Sockets {
  /** For `PgClient.layer({ stream })`: an unconnected socket, which node-postgres connects itself. */
  readonly pg: () => net.Socket
  /**
   * For mysql2's `stream` option (`MysqlClient.layer({ poolConfig: { stream } })`): a socket
   * connecting to the configured host and port (or `socketPath`), as mysql2 would open it.
   */
  readonly mysql: (options: {
    readonly config: { readonly host?: string; readonly port?: number; readonly socketPath?: string }
  }) => net.Socket
  /** Sockets made and not closed yet. */
  readonly open: () => number
  /** Destroys every socket still open. */
  readonly destroyAll: () => void
}

/**
 * Makes a socket tracker; give its factory to the client layer and the tracker to `bounded`.
 *
 * @since 0.1.0
 * @category constructors
 */
export const sockets = (): Sockets => {
  const open = new Set<net.Socket>()
  const track = (socket: net.Socket): net.Socket => {
    open.add(socket)
    socket.once("close", () => open.delete(socket))
    return socket
  }
  return {
    pg: () => track(new net.Socket()),
    mysql: ({ config }) => {
      const socket =
        config.socketPath !== undefined
          ? net.connect(config.socketPath)
          : net.connect(config.port ?? 3306, config.host ?? "localhost")
      socket.setNoDelay(true)
      return track(socket)
    },
    open: () => open.size,
    destroyAll: () => {
      for (const socket of open) socket.destroy()
      open.clear()
    }
  }
}

/**
 * Options of `bounded`.
 *
 * @since 0.1.0
 * @category models
 */
export interface BoundedOptions {
  /** How long releasing the layer may take. */
  readonly timeout: Duration.DurationInput
  /** Sockets to destroy once the release finished or its deadline passed. */
  readonly sockets?: Sockets | undefined
}

/**
 * The same layer, whose release (closing its scope: a pool's end, a client's quit) returns within
 * `timeout`. Past it the release goes on in the background, detached, and the tracked sockets are
 * destroyed, which ends it.
 *
 * @since 0.1.0
 * @category combinators
 */
export const bounded = <ROut, E, RIn>(
  layer: Layer.Layer<ROut, E, RIn>,
  options: BoundedOptions
): Layer.Layer<ROut, E, RIn> =>
  Layer.scopedContext(
    Effect.gen(function* () {
      const scope = yield* Scope.make()
      yield* Effect.addFinalizer((exit) =>
        Effect.forkDaemon(Scope.close(scope, exit)).pipe(
          Effect.flatMap((release) => Fiber.await(release)),
          Effect.interruptible,
          Effect.timeoutOption(options.timeout),
          Effect.ensuring(Effect.sync(() => options.sockets?.destroyAll()))
        )
      )
      return yield* Layer.buildWithScope(layer, scope)
    })
  )
