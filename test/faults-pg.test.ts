/** PostgreSQL under faults: a private cluster behind a fault proxy (see faults-sql.ts). */
import { startPostgres } from "./fault/servers.js"
import { sqlFaults } from "./faults-sql.js"

sqlFaults("pg", startPostgres)
