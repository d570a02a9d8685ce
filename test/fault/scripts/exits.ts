/**
 * Self-test scenario for runChild: imports the library from src/ by relative path (proving tsx maps
 * `.js` to the `.ts` sources), prints one JSON line and exits by itself.
 */
import { BatchFlow } from "../../../src/index.js"
import * as Postgres from "../../../src/Postgres.js"

console.log("starting")
console.log(
  JSON.stringify({
    tag: typeof BatchFlow.BatchFlow,
    postgresLayer: typeof Postgres.layer,
    mark: process.env.FAULT_HARNESS_MARK ?? null
  })
)
