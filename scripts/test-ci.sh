#!/usr/bin/env bash
# The README's test command: services up, then typecheck, lint and every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/services.sh
npm run typecheck
npm run lint
npx vitest run
