/**
 * Self-test scenario for the last-resort cleanups: starts a private Redis and never stops it. With
 * argument "exit" it then exits normally (the 'exit' handler must kill Redis); with "die" it SIGKILLs
 * itself, so no JavaScript runs any more (the reaper shell must kill Redis and remove its directory).
 */
import { startRedis } from "../servers.js"

const redis = await startRedis()
console.log(JSON.stringify({ pid: redis.pid() ?? null, port: redis.port, dir: redis.dir }))
if (process.argv[2] === "die") process.kill(process.pid, "SIGKILL")
process.exit(0)
