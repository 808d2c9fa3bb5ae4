#!/usr/bin/env bash
# test.sh — the README's test command: everything CI runs.
#   gofmt, go vet, staticcheck, go test -race in the core module and in every
#   module under contrib/, then the examples' smoke runs.
# Environment: FAAS_TEST_SHORT=1 skips the end-to-end example run (step e).
set -euo pipefail
cd "$(dirname "$0")"

STATICCHECK="honnef.co/go/tools/cmd/staticcheck@v0.8.2"

step() { printf '\n==> %s\n' "$*"; }
run() { printf '+ %s\n' "$*"; "$@"; }

# The core module plus every contrib module (there may be none).
modules=(.)
while IFS= read -r mod; do
  modules+=("$(dirname "$mod")")
done < <(find contrib -name go.mod -not -path '*/testdata/*' 2>/dev/null | sort)

step "(a) gofmt"
unformatted="$(gofmt -l .)"
if [[ -n "$unformatted" ]]; then
  echo "gofmt would change these files:" >&2
  echo "$unformatted" >&2
  exit 1
fi
echo "all files formatted"

for m in "${modules[@]}"; do
  step "(b) go vet in $m"
  (cd "$m" && run go vet ./...)
done

for m in "${modules[@]}"; do
  step "(c) staticcheck in $m"
  (cd "$m" && run go run "$STATICCHECK" ./...)
done

for m in "${modules[@]}"; do
  step "(d) go test -race in $m"
  (cd "$m" && run go test -race -count=1 ./...)
done

step "(e) examples: each example's smoke test, then the README's main command itself"
run go test -count=1 -run 'Smoke' ./examples/...
if [[ "${FAAS_TEST_SHORT:-0}" != 1 ]]; then
  run go run ./examples/quickstart
fi

step "all checks passed"
