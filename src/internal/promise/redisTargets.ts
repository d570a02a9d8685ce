/**
 * The Redis targets of `effect-batchflow/Redis`, for the Promise facade: these modules build
 * targets without loading ioredis, so the facade can export them to programs that never use Redis.
 */
export { del, expire, hset, incrBy, set, xadd, zadd } from "../redis/helpers.js"
export { command, isRedisTarget } from "../redis/targets.js"
