#!/usr/bin/env bash
# The package as a user gets it: builds and packs it, installs the tarball into an empty project with
# exactly the README's install commands (plain npm: no overrides, no flags; only the package name is
# replaced by the tarball's path), type-checks the README's quickstarts there with the project's own
# NodeNext tsconfig and runs them (SQLite without a server; PostgreSQL, MariaDB and Redis on the
# local servers of scripts/services.sh), checks what they wrote, checks the exports map, and starts
# the `effect-batchflow` command on every backend.
#
#   npm run check:consumer        (KEEP=1 keeps the temporary project; it is kept anyway on failure)
#
# Needs the npm registry. Writes only the table `quickstart_events` (PostgreSQL and MariaDB `test`
# databases), the bench table `consumer_check_bench`, and the Redis keys `quickstart:session:*`
# (db 0) and `consumer_check_bench:*` (db 13); all are removed before and after.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
started=$SECONDS
work=$(mktemp -d "${TMPDIR:-/tmp}/batchflow-consumer.XXXXXX")
app=$work/app

# Plain npm, whatever the environment says.
export npm_config_legacy_peer_deps=false npm_config_force=false npm_config_strict_peer_deps=false
export npm_config_audit=false npm_config_fund=false npm_config_update_notifier=false
# npx runs the project's own bin or fails: it never fetches a package.
export npm_config_yes=false

step() { printf '\n== consumer-check: %s (%d s)\n' "$*" "$((SECONDS - started))"; }
fail() {
  echo "consumer-check: FAILED: $*" >&2
  exit 1
}
expect_eq() { # what, expected, actual
  [ "$2" = "$3" ] || fail "$1: expected '$2', got '$3'"
  echo "ok: $1 = $3"
}

psql_() { psql -h 127.0.0.1 -U postgres -d test -v ON_ERROR_STOP=1 -qtAX "$@"; }
mariadb_() { mariadb -h 127.0.0.1 -uroot -N -B test "$@"; }
redis_() { redis-cli -h 127.0.0.1 -p 6379 "$@"; }

clean_servers() {
  psql_ -c 'DROP TABLE IF EXISTS quickstart_events, promise_quickstart_events, consumer_check_bench'
  mariadb_ -e 'DROP TABLE IF EXISTS quickstart_events, consumer_check_bench'
  local db pattern db_pattern
  for db_pattern in "0 quickstart:session:*" "13 consumer_check_bench:*"; do
    read -r db pattern <<<"$db_pattern"
    redis_ -n "$db" --scan --pattern "$pattern" | xargs -r -n 1000 redis-cli -h 127.0.0.1 -p 6379 -n "$db" DEL >/dev/null
  done
}

on_exit() {
  local rc=$?
  clean_servers >/dev/null 2>&1 || echo "consumer-check: could not clean the servers" >&2
  if [ "$rc" -eq 0 ] && [ -z "${KEEP:-}" ]; then
    rm -rf "$work"
  else
    echo "consumer-check: the temporary files are kept in $work (the project: $app)" >&2
  fi
  [ "$rc" -eq 0 ] && echo "consumer-check: OK in $((SECONDS - started)) s"
  return "$rc"
}
trap on_exit EXIT

step "the README's quickstarts are the example files; its install commands"
# Every `<!-- consumer-check: examples/X.ts -->` marker is followed by a ts block that must be the
# file without its leading /** … */ comment. The install commands are the `npm install` lines of
# the sh blocks of the "## Install" section, without their trailing comments.
node --input-type=module - "$repo/README.md" "$work/install-commands" "$work/quickstarts" <<'EOF'
import { readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
const [readmePath, commandsPath, quickstartsPath] = process.argv.slice(2)
const readme = readFileSync(readmePath, "utf8")
const marker = /<!-- consumer-check: (\S+) -->\n```ts\n([\s\S]*?)```\n/g
const files = []
for (const [, file, block] of readme.matchAll(marker)) {
  const text = readFileSync(join(readmePath, "..", file), "utf8").replace(/^\/\*\*[\s\S]*?\*\/\n+/, "")
  if (text !== block) {
    console.error(`README.md: the block marked ${file} is not that file (less its header comment)`)
    process.exit(1)
  }
  files.push(file)
}
if (files.length === 0) {
  console.error("README.md: no <!-- consumer-check: … --> blocks")
  process.exit(1)
}
const install = readme.split(/^## Install\n/m)[1]?.split(/^## /m)[0]
if (install === undefined) {
  console.error("README.md: no '## Install' section")
  process.exit(1)
}
const commands = [...install.matchAll(/```sh\n([\s\S]*?)```/g)]
  .flatMap(([, block]) => block.split("\n"))
  .map((line) => line.replace(/\s+#.*$/, "").trim())
  .filter((line) => line.startsWith("npm install "))
if (!commands.some((c) => c.split(/\s+/).includes("effect-batchflow"))) {
  console.error("README.md: no install command names effect-batchflow")
  process.exit(1)
}
writeFileSync(commandsPath, `${commands.join("\n")}\n`)
writeFileSync(quickstartsPath, `${files.join("\n")}\n`)
console.log(`quickstarts: ${files.join(", ")}`)
EOF
mapfile -t quickstarts <"$work/quickstarts"

step "build and pack"
rm -rf dist
npm run build
mkdir -p "$work/pack"
tarball=$work/pack/$(npm pack --ignore-scripts --silent --pack-destination "$work/pack" | tail -1)
[ -f "$tarball" ] || fail "npm pack made no tarball"
contents=$(tar -tzf "$tarball")
for f in package/LICENSE package/README.md package/package.json package/dist/index.js package/dist/index.d.ts \
  package/dist/bin.js package/bin/effect-batchflow.js; do
  grep -qx "$f" <<<"$contents" || fail "$f is missing from the tarball"
done
! grep -qx package/tsconfig.json <<<"$contents" || fail "tsconfig.json is in the tarball (the bin would run src/)"
echo "ok: $(basename "$tarball"), $(wc -l <<<"$contents") files"

step "install into an empty project with the README's commands"
mkdir -p "$app"
cd "$app"
cat >package.json <<'EOF'
{ "name": "consumer-check", "version": "1.0.0", "private": true, "type": "module" }
EOF
while read -r -a args; do
  [ ${#args[@]} -gt 0 ] || continue
  for i in "${!args[@]}"; do [ "${args[$i]}" = effect-batchflow ] && args[$i]=$tarball; done
  echo "\$ ${args[*]}"
  "${args[@]}"
done <"$work/install-commands"
npm ls --all >/dev/null || fail "npm ls reports problems in the installed tree"
expect_eq "installed effect major" 3 "$(node -p 'require("effect/package.json").version.split(".")[0]')"
# One copy of each package whose services and tags the library shares with the application.
for p in effect @effect/platform @effect/sql @effect/experimental; do
  expect_eq "copies of $p" 1 "$(find node_modules -path "*node_modules/$p/package.json" | wc -l)"
done

step "type-check the quickstarts with the project's own tsconfig (NodeNext)"
# The type checker is the project's tooling, not a README command: the repository's own versions.
ts_version=$(node -p "require('$repo/package.json').devDependencies.typescript")
node_types=$(node -p "require('$repo/package.json').devDependencies['@types/node']")
npm install --save-dev "typescript@$ts_version" "@types/node@$node_types"
for f in "${quickstarts[@]}" examples/prometheus.ts examples/multi-backend.ts examples/two-flows.ts; do cp "$repo/$f" .; done
cat >tsconfig.json <<'EOF'
{
  "compilerOptions": {
    "target": "ES2022",
    "lib": ["ES2022"],
    "module": "NodeNext",
    "moduleResolution": "NodeNext",
    "strict": true,
    "types": ["node"],
    "skipLibCheck": true,
    "outDir": "out"
  },
  "include": ["*.ts"]
}
EOF
./node_modules/.bin/tsc -p tsconfig.json
echo "ok: tsc"
# The declarations this package ships must also check without skipLibCheck (other packages' need not:
# some refer to DOM types or to @types/pg).
lib_errors=$(./node_modules/.bin/tsc -p tsconfig.json --noEmit --skipLibCheck false || true)
if grep 'node_modules/effect-batchflow/' <<<"$lib_errors"; then fail "effect-batchflow's declarations do not type-check"; fi
echo "ok: effect-batchflow's declarations (skipLibCheck false)"

step "the exports map: public modules import, internals do not"
node --input-type=module - <<'EOF'
import { readdirSync } from "node:fs"
const dist = "node_modules/effect-batchflow/dist"
const modules = readdirSync(dist).filter((f) => /^([A-Z]\w*|promise)\.js$/.test(f)).map((f) => f.slice(0, -3))
const root = await import("effect-batchflow")
for (const m of modules) await import(`effect-batchflow/${m}`)
const internal = ["internal/engine", "internal/engine/engine.js", "cli/main", "cli/bench", "bin"]
for (const path of internal) {
  try {
    await import(`effect-batchflow/${path}`)
    console.error(`effect-batchflow/${path} is importable`)
    process.exit(1)
  } catch (error) {
    if (error.code !== "ERR_PACKAGE_PATH_NOT_EXPORTED") throw error
  }
}
console.log(`ok: root (${Object.keys(root).sort().join(", ")})`)
console.log(`ok: subpaths ${modules.join(", ")}`)
console.log(`ok: not exported: ${internal.join(", ")}`)
EOF

clean_servers

run() { # file: runs out/<file>.js, which must exit 0 within 2 minutes
  echo "\$ node out/$1.js"
  timeout 120 node "out/$1.js" || fail "$1 exited with $?"
}

step "custom executor quickstart"
run custom-executor

step "SQLite quickstart"
run quickstart-sqlite
expect_eq "SQLite rows" 10001 "$(node -e '
  const db = new (require("better-sqlite3"))("quickstart.sqlite", { readonly: true })
  console.log(db.prepare("SELECT count(*) AS n FROM quickstart_events").get().n)')"

step "PostgreSQL quickstart"
run quickstart-postgres
expect_eq "PostgreSQL rows" 10001 "$(psql_ -c 'SELECT count(*) FROM quickstart_events')"
expect_eq "PostgreSQL row 10001" "view" "$(psql_ -c 'SELECT kind FROM quickstart_events WHERE id = 10001')"

step "Promise facade quickstart (no Effect in the program)"
run quickstart-promise
expect_eq "PostgreSQL rows (Promise facade)" 10001 "$(psql_ -c 'SELECT count(*) FROM promise_quickstart_events')"

step "MySQL / MariaDB quickstart"
run quickstart-mysql
expect_eq "MariaDB rows" 10001 "$(mariadb_ -e 'SELECT count(*) FROM quickstart_events')"
expect_eq "MariaDB row 10001" "view" "$(mariadb_ -e 'SELECT kind FROM quickstart_events WHERE id = 10001')"

step "Redis quickstart (ioredis $(node -p 'require("ioredis/package.json").version'))"
BATCHFLOW_REDIS_URL=redis://127.0.0.1:6379/0 run quickstart-redis
expect_eq "Redis quickstart:session:abc" user-1 "$(redis_ -n 0 GET quickstart:session:abc)"
expect_eq "Redis quickstart:session:def" user-2 "$(redis_ -n 0 GET quickstart:session:def)"
ttl=$(redis_ -n 0 PTTL quickstart:session:abc)
[ "$ttl" -gt 1000000 ] && [ "$ttl" -le 1800000 ] || fail "quickstart:session:abc has PTTL $ttl, not 30 minutes"
echo "ok: PTTL $ttl"

step "Prometheus example"
port=$(node -e 'const s = require("node:net").createServer().listen(0, "127.0.0.1", () => { console.log(s.address().port); s.close() })')
PORT=$port RUN_SECONDS=4 timeout 60 node out/prometheus.js &
example=$!
metrics=""
for _ in $(seq 1 40); do
  sleep 0.25
  metrics=$(curl -sf "http://127.0.0.1:$port/metrics" || true)
  grep -q '^batchflow_flushes_total' <<<"$metrics" && break
done
wait "$example" || fail "examples/prometheus.ts exited with $?"
grep -q '^batchflow_flushes_total' <<<"$metrics" || fail "no batchflow_flushes_total on /metrics"
echo "ok: $(grep -c '^batchflow_' <<<"$metrics") batchflow_ samples on /metrics"

step "the effect-batchflow command"
echo "\$ npx effect-batchflow --help"
npx effect-batchflow --help >"$work/help.txt"
grep -q bench "$work/help.txt" || fail "effect-batchflow --help does not list bench"
npx effect-batchflow bench --help >"$work/bench-help.txt"
grep -q -- --backend "$work/bench-help.txt" || fail "effect-batchflow bench --help does not list --backend"
echo "ok: --help, bench --help"
bench() { # backend, extra flags…
  echo "\$ npx effect-batchflow bench --backend $*"
  npx effect-batchflow bench --backend "$@" --rows 20000 --warmup 0 --runs 1 --baseline ||
    fail "effect-batchflow bench --backend $1 exited with $?"
}
bench noop
bench sqlite --table consumer_check_bench
bench pg --table consumer_check_bench
bench mysql --table consumer_check_bench
bench redis --table consumer_check_bench
