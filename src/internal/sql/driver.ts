/**
 * A database driver package as an `@effect/sql` client package resolves it: the copy that client
 * uses, so that its classes are the ones `instanceof` checks against (the direct paths,
 * sqliteDirect.ts and mysqlDirect.ts). `undefined` when either package cannot be loaded.
 *
 * @internal
 */
import { createRequire } from "node:module"

/** @internal */
export const driverOf = (clientPackage: string, driver: string): unknown => {
  try {
    const client = createRequire(import.meta.url).resolve(clientPackage)
    return createRequire(client)(driver)
  } catch {
    return undefined
  }
}
