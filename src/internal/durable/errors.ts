/**
 * The typed errors of durable mode.
 */
import * as Schema from "effect/Schema"
import * as BatchFlowError from "../../BatchFlowError.js"

/**
 * A producer's append was refused because its stream already holds `maxLength` entries not yet
 * acknowledged by a worker: the workers (or the database behind them) are not keeping up.
 *
 * @internal
 */
export class StreamFull extends Schema.TaggedError<StreamFull>()("StreamFull", {
  target: Schema.String,
  stream: Schema.String,
  /** Entries in the stream when the append was refused. */
  length: Schema.Number,
  maxLength: Schema.Number
}) {
  readonly [BatchFlowError.TypeId]: BatchFlowError.TypeId = BatchFlowError.TypeId
  override get message(): string {
    return `Durable stream "${this.stream}" for target "${this.target}" holds ${this.length} unacknowledged entries (maxLength ${this.maxLength}): the rows were not appended. The workers are not keeping up: add workers, raise maxLength, or shed the load.`
  }
}

/**
 * A durable producer or worker was given options it cannot run with (e.g. a target whose writes are
 * not idempotent, for at-least-once delivery). Raised when the layer is built.
 *
 * @internal
 */
export class DurableConfigError extends Schema.TaggedError<DurableConfigError>()("DurableConfigError", {
  field: Schema.String,
  detail: Schema.String
}) {
  readonly [BatchFlowError.TypeId]: BatchFlowError.TypeId = BatchFlowError.TypeId
  override get message(): string {
    return `Invalid durable configuration: ${this.field} ${this.detail}.`
  }
}
