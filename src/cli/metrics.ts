/**
 * `--metrics-port`: serves the process's Effect metrics (the `BatchFlowMetrics` ones, updated by the
 * bench's flows) as Prometheus text while the bench runs, through `effect-batchflow/Prometheus`. The
 * module and its OpenTelemetry packages are loaded only when the flag is given.
 *
 * @since 0.1.0
 */
import * as Effect from "effect/Effect"
import type * as Scope from "effect/Scope"
import { BackendError, messageOf } from "./harness.js"

/**
 * Starts the /metrics endpoint on 127.0.0.1:`port` for the scope; answers its URL.
 *
 * @since 0.1.0
 * @category constructors
 */
export const serve = (port: number): Effect.Effect<string, BackendError, Scope.Scope> =>
  Effect.tryPromise({
    try: () => import("../Prometheus.js"),
    catch: (cause) =>
      new BackendError({
        message: `--metrics-port needs the OpenTelemetry packages (${messageOf(cause)}): npm install @effect/opentelemetry @opentelemetry/exporter-prometheus @opentelemetry/sdk-metrics`,
        cause
      })
  }).pipe(
    Effect.flatMap((Prometheus) =>
      Prometheus.make({ port, host: "127.0.0.1", serviceName: "effect-batchflow-bench" })
    ),
    Effect.map((server) => server.url),
    Effect.mapError((cause) =>
      cause instanceof BackendError ? cause : new BackendError({ message: messageOf(cause), cause })
    )
  )
