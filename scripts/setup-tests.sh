#!/usr/bin/env bash
# Installs and starts what only the tests need (npm's `pretest` hook runs it before `npm test`;
# `npm run setup` does not). Runs every scripts/test-deps/*.sh in name order, each in its own bash,
# each printing one line when all it needs is present. Idempotent, and quick when nothing is missing.
#
# A part: a bash script in scripts/test-deps/ that sources scripts/lib/apt.sh (ensure_packages, say,
# die, as_root, wait_port) and ends with one `say` line; it exits non-zero when it cannot provide
# what the tests need. Add a file for a new dependency; do not edit the others.
#
# TETHER_TEST_SETUP=skip  runs nothing (the tests whose dependencies are missing then fail, or are
#                         reported skipped with the reason; under CI=true a skip fails the run).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ "${TETHER_TEST_SETUP:-}" == skip ]]; then
  echo "setup-tests: skipped (TETHER_TEST_SETUP=skip)"
  exit 0
fi

start=$(date +%s)
TETHER_APT_STAMP="$(mktemp)"
export TETHER_APT_STAMP TETHER_SETUP_PREFIX=setup-tests
trap 'rm -f "$TETHER_APT_STAMP"' EXIT

failed=()
for part in scripts/test-deps/*.sh; do
  name="$(basename "$part" .sh)"
  if ! TETHER_SETUP_PART="$name" bash "$part"; then
    failed+=("$name")
  fi
done

if (( ${#failed[@]} > 0 )); then
  echo "setup-tests: FAILED: ${failed[*]} (see above). Fix that and run npm test again," >&2
  echo "setup-tests: or run the tests without this step: TETHER_TEST_SETUP=skip npm test" >&2
  exit 1
fi
echo "setup-tests: ready in $(( $(date +%s) - start )) s"
