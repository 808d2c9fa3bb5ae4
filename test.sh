#!/usr/bin/env bash
# test.sh — the README's test command: everything CI runs.
#   gofmt, go vet, staticcheck, go test -race in the core module and in every
#   module under contrib/ (after building the real servers their tests
#   start), then the examples' smoke runs and the quickstart itself.
# Every step prints how long it took.
# Environment: FAAS_TEST_SHORT=1 skips the end-to-end example run (step f).
set -euo pipefail
cd "$(dirname "$0")"

STATICCHECK="honnef.co/go/tools/cmd/staticcheck@v0.8.2"
export GOFLAGS="${GOFLAGS:-}"

began=$SECONDS
step_start=$SECONDS
step_name=""
step() {
  finish_step
  step_name="$*"
  step_start=$SECONDS
  printf '\n==> %s\n' "$*"
}
finish_step() {
  if [[ -n "$step_name" ]]; then
    printf '    (%s: %ds)\n' "$step_name" "$((SECONDS - step_start))"
  fi
}
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

step "(a2) interpreters of the language runtimes (runtimes/python, runtimes/node)"
command -v python3 >/dev/null 2>&1 || { echo "python3 (3.9 or later) is required by runtimes/python's tests" >&2; exit 1; }
command -v node >/dev/null 2>&1 || { echo "node (18 or later) is required by runtimes/node's tests" >&2; exit 1; }
python3 -c 'import sys; sys.exit(0 if sys.version_info >= (3, 9) else "Python 3.9 or later is required, found " + sys.version.split()[0])'
node -e 'if (+process.versions.node.split(".")[0] < 18) { console.error("Node.js 18 or later is required, found " + process.versions.node); process.exit(1) }'
echo "$(python3 --version), Node.js $(node --version)"

for m in "${modules[@]}"; do
  step "(b) go vet in $m"
  (cd "$m" && run go vet ./...)
done

for m in "${modules[@]}"; do
  step "(c) staticcheck in $m"
  (cd "$m" && run go run "$STATICCHECK" ./...)
done

# contrib/kubernetes's tests run a real kube-apiserver and kwok, built from
# the module proxy once per machine and cached by version in
# ${FAAS_TOOLS_CACHE:-$HOME/.cache/faasplane/tools} (cold: kube-apiserver
# 5-10 min and 2.4 GB, kwok 2-3 min; cached: 0 s). Built here, before go
# test, so that the build does not count against go test's timeout.
if [[ -f contrib/kubernetes/tools/ensure-tools.sh ]]; then
  step "(d) tools for contrib/kubernetes (kube-apiserver, kwok)"
  eval "$(bash contrib/kubernetes/tools/ensure-tools.sh)"
fi
# contrib/nats's tests also run nats-server v2.15.3 as a separate process
# (a server restart with its JetStream store on disk), installed from the
# module proxy once per machine and cached by version the same way (cold:
# 26 s; cached: 0 s).
if [[ -f contrib/nats/tools/ensure-tools.sh ]]; then
  step "(d) tools for contrib/nats (nats-server)"
  eval "$(bash contrib/nats/tools/ensure-tools.sh)"
fi

for m in "${modules[@]}"; do
  step "(e) go test -race in $m"
  (cd "$m" && run go test -race -count=1 ./...)
done

step "(f) examples: each example's smoke test, then the README's main command itself"
run go test -count=1 -run 'Smoke' ./examples/...
if [[ "${FAAS_TEST_SHORT:-0}" != 1 ]]; then
  run go run ./examples/quickstart
fi

finish_step
step_name=""
printf '\n==> all checks passed in %ds\n' "$((SECONDS - began))"
