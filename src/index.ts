/**
 * effect-batchflow: asynchronous batch writing for Effect.
 *
 * @since 0.1.0
 */

/** @since 0.1.0 */
export * as BatchExecutor from "./BatchExecutor.js"
/** @since 0.1.0 */
export * as BatchFlow from "./BatchFlow.js"
/** @since 0.1.0 */
export * as BatchFlowConfig from "./BatchFlowConfig.js"
/** @since 0.1.0 */
export * as BatchFlowError from "./BatchFlowError.js"
/** @since 0.1.0 */
export * as BatchFlowMetrics from "./BatchFlowMetrics.js"
/** @since 0.1.0 */
export * as Coalesce from "./Coalesce.js"
/** @since 0.1.0 */
export * as Conflict from "./Conflict.js"
/** @since 0.1.0 */
export * as Retry from "./Retry.js"
/** @since 0.1.0 */
export * as Sql from "./Sql.js"
/** @since 0.1.0 */
export * as Table from "./Table.js"
/** @since 0.1.0 */
export * as Target from "./Target.js"
