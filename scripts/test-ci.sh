#!/usr/bin/env bash
# The README's test command: services up, then typecheck, lint, every test, and the consumer check
# (the packed package installed into an empty project with the README's commands, its quickstarts
# type-checked and run there).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/services.sh
npm run typecheck
npm run lint
npx vitest run
npm run check:consumer
