#!/usr/bin/env bash
# Sets up the machine (scripts/setup.sh) and runs every check: type check,
# lint and format, unit tests and the FUSE integration tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
npm run --silent lint
report=$(mktemp --suffix=.json)
status=0
npx vitest run --reporter=default --reporter=json --outputFile="$report" || status=$?
node scripts/test-summary.mjs "$report" || true
rm -f "$report"
exit "$status"
