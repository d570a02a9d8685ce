/**
 * Durable mode: rows survive a crashed writer, and any number of processes write them. Producers
 * append each group of rows to a Redis Stream per target (one entry per batch, not per row); workers
 * in a consumer group read the entries, write the rows through their own flow (a `Postgres.layer`,
 * say: same conflict modes, retries, poison-row isolation and metrics) and acknowledge an entry only
 * once every row of it is committed or reported.
 *
 * ```text
 * producers ── XADD ──▶ stream <prefix>:<target> ── XREADGROUP ──▶ workers ── flow.writeAll ──▶ database
 *                                     ▲                                 │
 *                                     └──────── XACK + XDEL ◀───────────┘
 * ```
 *
 * Delivery is at least once: after a worker dies mid-write, another one claims its entries
 * (`XAUTOCLAIM` after `minIdle`) and writes them again, so a row may be written twice. That is
 * harmless only for targets whose writes are idempotent: a `Table` with a `key` and
 * `Conflict.ignore`, `Conflict.update` or `Conflict.replace`. A worker refuses other targets
 * (`DurableConfigError`) unless given `allowDuplicates: true`; a producer warns about them. See
 * docs/guides/durable.md.
 *
 * @since 0.1.0
 */
import * as Context from "effect/Context"
import * as Duration from "effect/Duration"
import * as Effect from "effect/Effect"
import * as Layer from "effect/Layer"
import type * as Metric from "effect/Metric"
import type * as Scope from "effect/Scope"
import * as BatchExecutor from "./BatchExecutor.js"
import * as BatchFlow from "./BatchFlow.js"
import * as BatchFlowConfig from "./BatchFlowConfig.js"
import type { BatchFlowConfigError } from "./BatchFlowError.js"
import * as errors from "./internal/durable/errors.js"
import * as metrics from "./internal/durable/metrics.js"
import * as producerInternal from "./internal/durable/producer.js"
import * as workerInternal from "./internal/durable/worker.js"
import { RedisClient, type RedisConnectionError } from "./Redis.js"
import type * as Target from "./Target.js"

export type { WorkerStats } from "./internal/durable/worker.js"

// ---------------------------------------------------------------- metrics

/**
 * `batchflow_durable_entries_total`: what durable workers did with entries, per target (tag
 * `target`) and `event`: `read`, `claimed`, `acked`, `dead_lettered` (dead-letter records),
 * `retried` (writes of an entry's rows again after a transient failure: it grows through an
 * outage), `returned` (given back unsettled), `lost` (no longer pending for the worker). The sums of
 * `WorkerStats` over a process's workers. Updated per entry, with or without a metrics layer.
 *
 * @since 0.1.0
 * @category metrics
 */
export const workerEntries: Metric.Metric.Counter<number> = metrics.entries

/**
 * `batchflow_durable_rows_total`: rows of the entries durable workers wrote, per target (tag
 * `target`) and `outcome`: `committed` (by the flow) or `dead_lettered` (in a dead-letter record).
 *
 * @since 0.1.0
 * @category metrics
 */
export const workerRows: Metric.Metric.Counter<number> = metrics.rows

// ---------------------------------------------------------------- errors

/**
 * A producer's append was refused: the target's stream already holds `maxLength` entries that no
 * worker has acknowledged. With `whenFull: "fail"` the rows are reported at once (reason
 * `stream_full`, this error as the failure's `cause`); with `"retry"` (the default) the flow's retry
 * backs off first. Never trimmed away: what is in a stream stays until a worker acknowledges it.
 *
 * @since 0.1.0
 * @category errors
 */
export const StreamFull: typeof errors.StreamFull = errors.StreamFull

/**
 * @since 0.1.0
 * @category errors
 */
export type StreamFull = errors.StreamFull

/**
 * A worker or producer was given options it cannot run with. Raised when its layer is built.
 *
 * @since 0.1.0
 * @category errors
 */
export const DurableConfigError: typeof errors.DurableConfigError = errors.DurableConfigError

/**
 * @since 0.1.0
 * @category errors
 */
export type DurableConfigError = errors.DurableConfigError

// ---------------------------------------------------------------- keys

/**
 * The default key prefix: a target `events` is the stream `batchflow:durable:events`.
 *
 * @since 0.1.0
 * @category constants
 */
export const defaultPrefix = "batchflow:durable"

/**
 * The stream of a target: `<prefix>:<target name>`.
 *
 * @since 0.1.0
 * @category utils
 */
export const streamKey = (target: { readonly name: string }, prefix: string = defaultPrefix): string =>
  producerInternal.streamKey(prefix, target)

/**
 * The dead-letter stream of a target: `<prefix>:<target name>:dead`. Each record has the fields
 * `reason`, `detail` (the failure's message, row values masked), `entry` (the original entry id),
 * `producer`, `seq` (the producer's id of the first row), `deliveries`, `count` and `rows` (JSON of the
 * rows' encoded side, as the entries hold them).
 *
 * @since 0.1.0
 * @category utils
 */
export const deadLetterKey = (target: { readonly name: string }, prefix: string = defaultPrefix): string =>
  workerInternal.deadLetterKey(producerInternal.streamKey(prefix, target))

// ---------------------------------------------------------------- producer

/**
 * What a producer's executor needs.
 *
 * @since 0.1.0
 * @category models
 */
export interface ExecutorOptions {
  /** Key prefix of the streams. Default `batchflow:durable`. Workers must use the same. */
  readonly prefix?: string | undefined
  /**
   * Entries (not rows) a stream may hold unacknowledged before appends are refused with
   * `StreamFull`. Each entry holds up to `flushSize` rows. Default 10,000.
   */
  readonly maxLength?: number | undefined
  /**
   * On a full stream: `"retry"` (default) backs off with the flow's retry settings, then reports the
   * rows (reason `stream_full`); `"fail"` reports them at once.
   */
  readonly whenFull?: "retry" | "fail" | undefined
  /**
   * This producer's id, written into every entry with the sequence number of its first row (row ids
   * `producer/seq+i`). Default: host, pid and a random part.
   */
  readonly producerId?: string | undefined
}

/**
 * A producer's flow options: the flow's (batching, retries, timeouts, buffer) and the executor's.
 *
 * @since 0.1.0
 * @category models
 */
export interface ProducerOptions extends BatchFlowConfig.Options, ExecutorOptions {}

const positiveInteger = (field: string, value: number | undefined, fallback: number) =>
  value === undefined
    ? Effect.succeed(fallback)
    : Number.isSafeInteger(value) && value > 0
      ? Effect.succeed(value)
      : Effect.fail(
          new errors.DurableConfigError({ field, detail: `must be a positive integer (got ${value})` })
        )

/**
 * The executor of a flow that appends every target's rows to its stream (one entry per group of
 * rows) through the `RedisClient`. For a flow of your own (`BatchFlow.Tag(...).layer({ executors })`);
 * `producer` is this executor in a `BatchFlow` layer. Checks Redis's persistence when the flow starts
 * (a warning when AOF is off).
 *
 * @since 0.1.0
 * @category executors
 */
export const executor = (
  options: ExecutorOptions = {}
): BatchExecutor.Executor<DurableConfigError, RedisClient> =>
  BatchExecutor.makeExecutor({
    name: "durable",
    accepts: () => true,
    make: () =>
      Effect.gen(function* () {
        const maxLength = yield* positiveInteger("maxLength", options.maxLength, 10_000)
        const service = yield* RedisClient
        yield* producerInternal.checkPersistence(service)
        return producerInternal.make(service.connection, {
          prefix: options.prefix ?? defaultPrefix,
          maxLength,
          whenFull: options.whenFull ?? "retry",
          producerId: options.producerId ?? producerInternal.defaultProducerId()
        })
      })
  })

/**
 * A producer's default `bufferSize`: one batch waiting behind each append in flight
 * (`flushSize × concurrency`, 2,000 rows with the flow's defaults) rather than the flow's 10,000.
 * Rows in a producer's memory are not durable yet, and appends are fast: a short buffer loses less
 * at a crash, and costs less CPU (rows that wait long survive young-generation collections; measured
 * in docs/development/architecture.md). Invalid settings are left to the flow's own checks.
 */
const producerBufferSize = (options: BatchFlowConfig.Options): number | undefined => {
  const flushSize = options.flushSize ?? BatchFlowConfig.defaults.flushSize
  const concurrency = options.concurrency ?? BatchFlowConfig.defaults.concurrency
  return Number.isSafeInteger(flushSize) &&
    Number.isSafeInteger(concurrency) &&
    flushSize > 0 &&
    concurrency > 0
    ? flushSize * concurrency
    : undefined
}

/**
 * A `BatchFlow` whose writes are appends to Redis Streams: `submit` / `submitAll` batch rows as
 * usual, each flushed group becomes one entry, and `write` / `writeAll` succeed once Redis has
 * accepted the append (not once the database has the rows: that is the workers' part). Needs a
 * `RedisClient` (`Redis.layerClient`).
 *
 * @example
 * ```ts
 * import { Effect, Layer, Schema } from "effect"
 * import { BatchFlow, Conflict, Table } from "effect-batchflow"
 * import * as Durable from "effect-batchflow/Durable"
 * import * as Redis from "effect-batchflow/Redis"
 *
 * const Events = Table.make("events", {
 *   columns: Schema.Struct({ id: Schema.Number, name: Schema.String }),
 *   key: ["id"],
 *   conflict: Conflict.ignore
 * })
 * const ProducerLive = Durable.producer({ flushSize: 500 }).pipe(Layer.provide(Redis.layerClient()))
 * const program = Effect.gen(function* () {
 *   const flow = yield* BatchFlow.BatchFlow
 *   yield* flow.write(Events, { id: 1, name: "signup" }) // appended to batchflow:durable:events
 * })
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const producer = (
  options: ProducerOptions = {}
): Layer.Layer<BatchFlow.BatchFlow, BatchFlowConfigError | DurableConfigError, RedisClient> => {
  const { prefix, maxLength, whenFull, producerId, ...flowOptions } = options
  return BatchFlow.layer({
    ...flowOptions,
    bufferSize: flowOptions.bufferSize ?? producerBufferSize(flowOptions),
    executors: [executor({ prefix, maxLength, whenFull, producerId })]
  })
}

// ---------------------------------------------------------------- worker

/**
 * A running worker.
 *
 * @since 0.1.0
 * @category models
 */
export interface WorkerService {
  /** This worker's consumer name in the group. */
  readonly consumer: string
  readonly group: string
  readonly stats: Effect.Effect<workerInternal.WorkerStats>
}

/**
 * @since 0.1.0
 * @category tags
 */
export class Worker extends Context.Tag("effect-batchflow/Durable/Worker")<Worker, WorkerService>() {}

/**
 * A worker's options.
 *
 * @since 0.1.0
 * @category models
 */
export interface WorkerOptions<I = BatchFlow.BatchFlow> {
  /** The targets whose streams it reads: it decodes and writes each entry as its target's rows. */
  readonly targets: ReadonlyArray<Target.Any>
  /** Key prefix of the streams, as the producers'. Default `batchflow:durable`. */
  readonly prefix?: string | undefined
  /** The consumer group. Default `batchflow`. One group per stream: acknowledged entries are deleted. */
  readonly group?: string | undefined
  /** This worker's consumer name, unique in the group. Default: host, pid and a random part. */
  readonly consumer?: string | undefined
  /** Entries per read (XREADGROUP COUNT, per stream). Default 10. */
  readonly count?: number | undefined
  /** How long a read waits for new entries (BLOCK); also the most closing waits for it. Default 1 s. */
  readonly block?: Duration.DurationInput | undefined
  /**
   * Entries written at once (each one `flow.writeAll`). Enough of them keep the flow's `concurrency`
   * statements busy: at least `flow concurrency × flow flushSize / rows per entry`. Default 8.
   */
  readonly concurrency?: number | undefined
  /**
   * How long an entry stays with a consumer that does not touch it before another worker claims it
   * (XAUTOCLAIM): the handover time after a crash. A live worker touches what it holds every
   * `minIdle / 3`. Default 30 s.
   */
  readonly minIdle?: Duration.DurationInput | undefined
  /** How often idle entries are looked for. Default `minIdle / 2`. */
  readonly claimInterval?: Duration.DurationInput | undefined
  /**
   * Deliveries after which an entry that still is not settled goes to the dead-letter stream (reason
   * `max_deliveries`) instead of being written again. A delivery is a read or a claim: an entry is
   * delivered again only after the worker holding it died or closed before settling it (or its flow
   * was closed), never because the database failed (see `retryBackoff`). So it guards against
   * entries that crash their workers, not against outages. Default 5.
   */
  readonly maxDeliveries?: number | undefined
  /**
   * Rows whose write failed transiently (a retryable reason after the flow's own attempts, an unknown
   * outcome, `close_timeout`, the flow's `BufferFull`) are written again, only they, by the worker
   * holding their entry, as long as it takes: the entry stays with it (kept alive, no delivery
   * counted, its room taken, so an outage stops the reads). The first wait is `retryBackoff`; each
   * next one doubles, up to `maxRetryBackoff`, and each is jittered to between half of it and all of
   * it. Default 100 ms; at least 1 ms.
   */
  readonly retryBackoff?: Duration.DurationInput | undefined
  /**
   * The longest wait between two writes of an entry's rows after transient failures (see
   * `retryBackoff`): about how long a recovered database may wait for the worker. Default 5 s; at
   * least `retryBackoff`.
   */
  readonly maxRetryBackoff?: Duration.DurationInput | undefined
  /**
   * Where rows reported with a final failure go: `"stream"` (default) the dead-letter stream
   * (`deadLetterKey`), `"log"` an error log line (counts and reason, no row values).
   */
  readonly deadLetter?: "stream" | "log" | undefined
  /** Accept targets whose writes are not idempotent (they may be written twice). Default false. */
  readonly allowDuplicates?: boolean | undefined
  /**
   * How long closing may take, all of it (stopping the read, finishing the entries being written,
   * removing the consumer), even when Redis does not answer; entries not settled by then stay
   * pending. Default 30 s.
   */
  readonly closeTimeout?: Duration.DurationInput | undefined
  /** Limit for each Redis command other than the blocking read. Default 10 s. */
  readonly commandTimeout?: Duration.DurationInput | undefined
  /** The flow that writes the rows. Default the `BatchFlow` service. */
  readonly flow?: Context.Tag<I, BatchFlow.BatchFlow> | undefined
}

const millis = (input: Duration.DurationInput | undefined, fallback: number): number =>
  input === undefined ? fallback : Duration.toMillis(Duration.decode(input))

const checkWorker = (options: WorkerOptions<unknown>) =>
  Effect.gen(function* () {
    const fail = (field: string, detail: string) =>
      Effect.fail(new errors.DurableConfigError({ field, detail }))
    if (options.targets.length === 0) return yield* fail("targets", "must name at least one target")
    const names = new Set<string>()
    for (const target of options.targets) {
      if (names.has(target.name)) return yield* fail("targets", `names "${target.name}" twice`)
      names.add(target.name)
      if (!target.idempotentWrites) {
        if (options.allowDuplicates !== true) {
          return yield* fail(
            "targets",
            `has "${target.name}", whose writes are not idempotent (no key, or Conflict.none): delivery is at least once, so its rows could be written twice. Give it a key and Conflict.ignore / update / replace, or pass allowDuplicates: true`
          )
        }
        yield* Effect.logWarning(
          `Durable worker: target "${target.name}" is not idempotent; rows delivered again after a crash are written twice (allowDuplicates).`
        )
      }
    }
    const count = yield* positiveInteger("count", options.count, 10)
    const concurrency = yield* positiveInteger("concurrency", options.concurrency, 8)
    const maxDeliveries = yield* positiveInteger("maxDeliveries", options.maxDeliveries, 5)
    const minIdleMillis = millis(options.minIdle, 30_000)
    if (!(minIdleMillis >= 10)) return yield* fail("minIdle", `must be at least 10 ms (got ${minIdleMillis})`)
    const retryBackoffMillis = millis(options.retryBackoff, 100)
    if (!(retryBackoffMillis >= 1 && Number.isFinite(retryBackoffMillis))) {
      return yield* fail(
        "retryBackoff",
        `must be a finite duration of at least 1 ms (got ${retryBackoffMillis} ms)`
      )
    }
    const maxRetryBackoffMillis = millis(options.maxRetryBackoff, Math.max(5_000, retryBackoffMillis))
    if (!(maxRetryBackoffMillis >= retryBackoffMillis && Number.isFinite(maxRetryBackoffMillis))) {
      return yield* fail(
        "maxRetryBackoff",
        `must be a finite duration of at least retryBackoff (${retryBackoffMillis} ms; got ${maxRetryBackoffMillis} ms)`
      )
    }
    return {
      prefix: options.prefix ?? defaultPrefix,
      group: options.group ?? "batchflow",
      consumer: options.consumer ?? producerInternal.defaultProducerId(),
      count,
      blockMillis: Math.max(1, Math.round(millis(options.block, 1_000))),
      concurrency,
      minIdleMillis: Math.round(minIdleMillis),
      claimIntervalMillis: Math.max(5, Math.round(millis(options.claimInterval, minIdleMillis / 2))),
      maxDeliveries,
      retryBackoffMillis: Math.round(retryBackoffMillis),
      maxRetryBackoffMillis: Math.round(maxRetryBackoffMillis),
      deadLetter: options.deadLetter ?? "stream",
      closeTimeoutMillis: millis(options.closeTimeout, 30_000),
      commandTimeoutMillis: millis(options.commandTimeout, 10_000)
    } satisfies workerInternal.WorkerSettings
  })

/**
 * Starts a worker in the current scope: its fibers read the targets' streams with a consumer group,
 * write each entry's rows with `flow.writeAll` and acknowledge (XACK, then XDEL) each entry once all
 * its rows are committed or reported with a final failure (those to the dead-letter stream). Rows
 * with a transient failure are written again by the same worker, with a backoff, until they are
 * written: a database outage makes entries wait (and the stream grow), it does not dead-letter them.
 * Closing the scope stops reading, finishes the entries it holds (at most `closeTimeout`) and
 * acknowledges them; entries still waiting for a retry are left pending for a later claim.
 *
 * @since 0.1.0
 * @category constructors
 */
export const makeWorker = <I = BatchFlow.BatchFlow>(
  options: WorkerOptions<I>
): Effect.Effect<WorkerService, DurableConfigError | RedisConnectionError, I | RedisClient | Scope.Scope> =>
  Effect.gen(function* () {
    const settings = yield* checkWorker(options as WorkerOptions<unknown>)
    const flow = yield* (options.flow ?? BatchFlow.BatchFlow) as Context.Tag<I, BatchFlow.BatchFlow>
    const service = yield* RedisClient
    const running = yield* workerInternal.start(flow, service, options.targets, settings)
    const worker: WorkerService = { consumer: settings.consumer, group: settings.group, stats: running.stats }
    return worker
  })

/**
 * A scoped layer running a worker (see `makeWorker`). Needs the flow that writes to the real sink
 * (e.g. `Postgres.layer`) and a `RedisClient`; the reads use a second connection of their own.
 *
 * @example
 * ```ts
 * import { PgClient } from "@effect/sql-pg"
 * import { Layer, Redacted, Schema } from "effect"
 * import { Conflict, Table } from "effect-batchflow"
 * import * as Durable from "effect-batchflow/Durable"
 * import * as Postgres from "effect-batchflow/Postgres"
 * import * as Redis from "effect-batchflow/Redis"
 *
 * const Events = Table.make("events", {
 *   columns: Schema.Struct({ id: Schema.Number, name: Schema.String }),
 *   key: ["id"],
 *   conflict: Conflict.ignore
 * })
 * const WorkerLive = Durable.worker({ targets: [Events], minIdle: "5 seconds" }).pipe(
 *   Layer.provide(Postgres.layer({ flushSize: 2000 })),
 *   Layer.provide(PgClient.layer({ url: Redacted.make("postgres://postgres@127.0.0.1:5432/test") })),
 *   Layer.provide(Redis.layerClient())
 * )
 * ```
 *
 * @since 0.1.0
 * @category layers
 */
export const worker = <I = BatchFlow.BatchFlow>(
  options: WorkerOptions<I>
): Layer.Layer<Worker, DurableConfigError | RedisConnectionError, I | RedisClient> =>
  Layer.scoped(Worker, makeWorker(options))
