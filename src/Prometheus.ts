/**
 * Prometheus exposure: serves every Effect metric of the process (the `BatchFlowMetrics` ones and any
 * other) as Prometheus text on `/metrics`, through `@effect/opentelemetry` and
 * `@opentelemetry/exporter-prometheus` (optional peer dependencies, needed only by this module).
 *
 * Counters appear with a `_total` suffix, histograms as `_bucket`/`_sum`/`_count`, and every series
 * carries `otel_scope_name="@effect/opentelemetry/Metrics"`.
 *
 * @since 0.1.0
 */
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as Metrics from "@effect/opentelemetry/Metrics"
import * as Resource from "@effect/opentelemetry/Resource"
import { PrometheusExporter } from "@opentelemetry/exporter-prometheus"
import * as Context from "effect/Context"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import * as Schema from "effect/Schema"
import type * as Scope from "effect/Scope"

/**
 * @since 0.1.0
 * @category models
 */
export interface Options {
  /** The port to listen on. Default 9464 (OpenTelemetry's Prometheus default); 0 picks a free one. */
  readonly port?: number | undefined
  /** The interface to listen on. Default: all interfaces. Use `127.0.0.1` to keep it local. */
  readonly host?: string | undefined
  /** The path that serves the metrics. Default `/metrics`; other paths answer 404. */
  readonly path?: string | undefined
  /** `service.name` of the resource (shown in `target_info`). Default `batchflow`. */
  readonly serviceName?: string | undefined
}

/**
 * A running /metrics endpoint.
 *
 * @since 0.1.0
 * @category models
 */
export interface PrometheusServer {
  /** The port it listens on (the one picked when `port` was 0). */
  readonly port: number
  /** The full URL of the metrics path, e.g. `http://127.0.0.1:9464/metrics`. */
  readonly url: string
  /** The exporter, e.g. to serve it from another HTTP server with `getMetricsRequestHandler`. */
  readonly exporter: PrometheusExporter
}

/**
 * @since 0.1.0
 * @category tags
 */
export const PrometheusServer: Context.Tag<PrometheusServer, PrometheusServer> =
  Context.GenericTag<PrometheusServer>("effect-batchflow/PrometheusServer")

/**
 * The /metrics server could not listen (port in use, no permission…).
 *
 * @since 0.1.0
 * @category errors
 */
export class PrometheusServerError extends Schema.TaggedError<PrometheusServerError>()(
  "PrometheusServerError",
  {
    host: Schema.String,
    port: Schema.Number,
    cause: Schema.Defect
  }
) {
  /** @since 0.1.0 */
  override get message(): string {
    const reason = this.cause instanceof Error ? this.cause.message : String(this.cause)
    return `Could not serve Prometheus metrics on ${this.host}:${this.port}: ${reason}. Choose another port (0 picks a free one) or stop the process holding it.`
  }
}

/**
 * Registers the Effect metrics with a Prometheus exporter that does not start its own server, for
 * applications that serve `exporter.getMetricsRequestHandler` themselves. The exporter is shut down
 * with the scope.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeExporter = (
  options: { readonly serviceName?: string | undefined } = {}
): Effect.Effect<PrometheusExporter, never, Scope.Scope> =>
  Effect.gen(function* () {
    const exporter = new PrometheusExporter({ preventServerStart: true })
    const producer = yield* Metrics.makeProducer
    yield* Metrics.registerProducer(producer, () => exporter)
    return exporter
  }).pipe(Effect.provide(Resource.layer({ serviceName: options.serviceName ?? "batchflow" })))

const listen = (server: http.Server, port: number, host: string | undefined) =>
  Effect.async<number, PrometheusServerError>((resume) => {
    const onError = (cause: Error) =>
      resume(Effect.fail(new PrometheusServerError({ host: host ?? "0.0.0.0", port, cause })))
    server.once("error", onError)
    server.listen(port, host, () => {
      server.off("error", onError)
      resume(Effect.succeed((server.address() as AddressInfo).port))
    })
  })

const close = (server: http.Server) =>
  Effect.async<void>((resume) => {
    server.close(() => resume(Effect.void))
    server.closeAllConnections()
  })

/**
 * Starts an HTTP server serving the metrics on `path`; it stops with the scope.
 *
 * @since 0.1.0
 * @category constructors
 */
export const make = (
  options: Options = {}
): Effect.Effect<PrometheusServer, PrometheusServerError, Scope.Scope> =>
  Effect.gen(function* () {
    const exporter = yield* makeExporter(options)
    const path = options.path ?? "/metrics"
    const server = http.createServer((request, response) => {
      const url = new URL(request.url ?? "/", "http://localhost")
      if (request.method === "GET" && url.pathname === path) {
        exporter.getMetricsRequestHandler(request, response)
        return
      }
      response.statusCode = 404
      response.end(`Not found: metrics are served on ${path}\n`)
    })
    const port = yield* Effect.acquireRelease(listen(server, options.port ?? 9464, options.host), () =>
      close(server)
    )
    const host = options.host === undefined || options.host === "0.0.0.0" ? "127.0.0.1" : options.host
    const urlHost = host.includes(":") ? `[${host}]` : host
    return { port, url: `http://${urlHost}:${port}${path}`, exporter }
  })

/**
 * A scoped layer serving the process's Effect metrics as Prometheus text on `http://host:port/path`.
 * Flows record metrics when given the `metrics` option.
 *
 * @example
 * ```ts
 * const FlowLive = Postgres.layer({ metrics: { database: "postgres" } }).pipe(Layer.provide(PgLive))
 * const MainLive = Layer.merge(FlowLive, Prometheus.layer({ port: 9464 }))
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const layer = (options: Options = {}): Layer.Layer<PrometheusServer, PrometheusServerError> =>
  Layer.scoped(PrometheusServer, make(options))
