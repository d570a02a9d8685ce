/**
 * A TCP proxy in the test process, in front of a private server, that misbehaves on demand:
 *
 * - `pass()` (the default): bytes, FIN and RST are forwarded both ways, so a server's close or reset
 *   reaches the client as it would without the proxy.
 * - `cut()`: every open connection is destroyed, both sides, at once (FIN; `{ reset: true }` sends RST).
 *   It is an event, not a mode: new connections are then handled by the current mode.
 * - `refuse()`: each new connection is destroyed as soon as it is accepted (the client sees its
 *   connection closed before any byte; a true ECONNREFUSED needs a port where nothing listens, e.g. the
 *   port of a crashed server, or the proxy after `close()`). Open connections keep being forwarded.
 * - `blackhole()`: connections keep being accepted and nothing crosses in either direction any more —
 *   no byte (dropped, not buffered), no FIN, no RST. A new connection is never connected to the server;
 *   open ones stay open even when the server side closes (a server's idle or handshake timeout must not
 *   give the black hole away). Back in `pass()`, closes that happened meanwhile are delivered, and
 *   connections accepted during the black hole (they have no server side) are closed.
 * - `close()`: destroys everything and stops listening.
 *
 * Bytes dropped in a black hole are lost, so a connection that carried traffic through one usually has
 * a broken protocol stream afterwards: tests should expect the client to discard it.
 *
 * The listening socket and every socket are unref'd: the proxy never keeps a process alive by itself.
 */
import * as net from "node:net"

export type ProxyMode = "pass" | "refuse" | "blackhole"

export interface FaultProxy {
  /** The proxy's port on 127.0.0.1. */
  readonly port: number
  readonly targetPort: number
  readonly mode: () => ProxyMode
  readonly pass: () => void
  readonly cut: (options?: { readonly reset?: boolean }) => void
  readonly refuse: () => void
  readonly blackhole: () => void
  /** Client connections currently open. */
  readonly connections: () => number
  /** Client connections accepted since the start (refused ones included). */
  readonly accepted: () => number
  readonly close: () => Promise<void>
  readonly [Symbol.asyncDispose]: () => Promise<void>
}

type Ending = "fin" | "rst"

interface Pair {
  readonly client: net.Socket
  upstream: net.Socket | undefined
  /** Closes seen during a black hole, delivered to the other side on `pass()`. */
  clientEnded: Ending | undefined
  upstreamEnded: Ending | undefined
}

/** Ends (FIN after pending writes) or resets a socket; a no-op on a destroyed one. */
const finish = (socket: net.Socket, how: Ending): void => {
  if (socket.destroyed) return
  if (how === "fin") {
    socket.end()
    // A peer that never answers our FIN must not keep the socket forever.
    setTimeout(() => socket.destroy(), 5_000).unref()
    return
  }
  try {
    socket.resetAndDestroy()
  } catch {
    socket.destroy()
  }
}

/** Starts a proxy to `127.0.0.1:targetPort` on a free loopback port. */
export const startProxy = (targetPort: number): Promise<FaultProxy> =>
  new Promise((resolve, reject) => {
    let mode: ProxyMode = "pass"
    let closed = false
    let acceptedCount = 0
    const pairs = new Set<Pair>()

    const forget = (pair: Pair) => {
      if (pair.client.destroyed && (pair.upstream === undefined || pair.upstream.destroyed))
        pairs.delete(pair)
    }

    /** Forwards `from` → `to`, except in a black hole, where everything from `from` is dropped. */
    const wire = (
      pair: Pair,
      from: net.Socket,
      to: () => net.Socket | undefined,
      side: "client" | "upstream"
    ) => {
      from.on("data", (chunk: Buffer) => {
        const target = to()
        if (mode === "blackhole" || target === undefined || target.destroyed) return
        if (!target.write(chunk)) {
          from.pause()
          target.once("drain", () => from.resume())
        }
      })
      // 'error' is always followed by 'close' with hadError = true, where it is handled.
      from.on("error", () => undefined)
      from.on("close", (hadError: boolean) => {
        const how: Ending = hadError ? "rst" : "fin"
        if (mode === "blackhole") {
          if (side === "client") pair.clientEnded = how
          else pair.upstreamEnded = how
        } else {
          const target = to()
          if (target !== undefined) finish(target, how)
        }
        forget(pair)
      })
    }

    const connectUpstream = (pair: Pair) => {
      const upstream = net.connect({ host: "127.0.0.1", port: targetPort })
      upstream.setNoDelay(true)
      upstream.unref()
      pair.upstream = upstream
      wire(pair, upstream, () => pair.client, "upstream")
    }

    const server = net.createServer((client) => {
      acceptedCount++
      client.unref()
      if (closed || mode === "refuse") {
        client.on("error", () => undefined)
        client.destroy()
        return
      }
      client.setNoDelay(true)
      const pair: Pair = { client, upstream: undefined, clientEnded: undefined, upstreamEnded: undefined }
      pairs.add(pair)
      wire(pair, client, () => pair.upstream, "client")
      if (mode === "pass") connectUpstream(pair)
    })
    server.unref()

    const destroyAll = (reset: boolean) => {
      for (const pair of pairs) {
        for (const socket of [pair.client, pair.upstream]) {
          if (socket === undefined) continue
          if (reset) finish(socket, "rst")
          else socket.destroy()
        }
      }
      pairs.clear()
    }

    const proxy: FaultProxy = {
      port: 0,
      targetPort,
      mode: () => mode,
      pass: () => {
        const was = mode
        mode = "pass"
        if (was !== "blackhole") return
        for (const pair of [...pairs]) {
          const { client, upstream } = pair
          if (upstream === undefined) {
            // Accepted during the black hole: its first bytes are gone, it has no server side.
            client.destroy()
          } else if (pair.clientEnded !== undefined) {
            finish(upstream, pair.clientEnded)
          } else if (pair.upstreamEnded !== undefined || upstream.destroyed) {
            finish(client, pair.upstreamEnded ?? "fin")
          } else {
            // Writes paused for backpressure before the black hole may wait for a 'drain' that came.
            client.resume()
            upstream.resume()
          }
          forget(pair)
        }
      },
      cut: (options) => destroyAll(options?.reset === true),
      refuse: () => {
        mode = "refuse"
      },
      blackhole: () => {
        mode = "blackhole"
        // Keep reading (and dropping) on both sides, even where backpressure had paused reading.
        for (const { client, upstream } of pairs) {
          client.resume()
          upstream?.resume()
        }
      },
      connections: () => [...pairs].filter((pair) => !pair.client.destroyed).length,
      accepted: () => acceptedCount,
      close: () =>
        new Promise<void>((done) => {
          if (closed) return done()
          closed = true
          destroyAll(false)
          // close() waits for open connections: all are destroyed, but keep it bounded anyway.
          const timer = setTimeout(done, 2_000)
          timer.unref()
          server.close(() => {
            clearTimeout(timer)
            done()
          })
        }),
      [Symbol.asyncDispose]: () => proxy.close()
    }

    server.once("error", reject)
    server.listen(0, "127.0.0.1", () => {
      server.off("error", reject)
      server.on("error", () => undefined)
      const { port } = server.address() as net.AddressInfo
      resolve({ ...proxy, port, [Symbol.asyncDispose]: () => proxy.close() })
    })
  })
