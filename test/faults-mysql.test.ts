/** MariaDB under faults: a private instance behind a fault proxy (see faults-sql.ts). */
import { startMariaDb } from "./fault/servers.js"
import { sqlFaults } from "./faults-sql.js"

sqlFaults("mysql", startMariaDb)
sqlFaults("mysql", startMariaDb, true)
