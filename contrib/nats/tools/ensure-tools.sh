#!/usr/bin/env bash
# ensure-tools.sh — builds and caches the nats-server binary that
# contrib/nats's tests run as a separate process (package natstest), so
# that a server restart, with its JetStream state on disk, is exercised:
#
#   nats-server  `go install`ed from the Go module proxy at a fixed version
#                (no prebuilt binary can be downloaded on these machines).
#
# It goes into a cache keyed by version, so a later run (and a later session
# on the same machine) skips it:
#   ${FAAS_TOOLS_CACHE:-$HOME/.cache/faasplane/tools}/nats-server-v2.15.3/nats-server
#
# Progress and timings go to stderr; stdout gets only the path as an export
# line, so a script can take it with
#   eval "$(contrib/nats/tools/ensure-tools.sh)"
#
# Cost on a 2-core machine: 26 s with a cold GOCACHE (a 17 MB binary);
# cached: 0 s.
# The version here must match natstest.ServerVersion
# (TestToolVersionMatchesScript checks that) and the module's go.mod.
set -euo pipefail

NATS_SERVER_VERSION=v2.15.3

cache="${FAAS_TOOLS_CACHE:-$HOME/.cache/faasplane/tools}"
dir="$cache/nats-server-$NATS_SERVER_VERSION"
bin="$dir/nats-server"

log() { printf 'ensure-tools: %s\n' "$*" >&2; }
now() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }

mkdir -p "$dir"

# Two test binaries (or a test and CI's own step) may get here at once: one
# builds, the other waits and then finds the binary in place. The lock is
# per tool, so this never waits for a kube-apiserver build of
# contrib/kubernetes.
exec 9>"$dir/.lock"
if ! flock -w 900 9; then
  log "timed out waiting for $dir/.lock"
  exit 1
fi

# Go settings of the caller (a go.work, -mod=vendor, -race) must not leak
# into the build. CGO off: a static binary, as nats-server is released.
export GOWORK=off GOFLAGS= CGO_ENABLED=0

if [[ -x "$bin" ]]; then
  log "nats-server $NATS_SERVER_VERSION: cached at $bin"
else
  log "nats-server $NATS_SERVER_VERSION: installing from the module proxy"
  t0="$(now)"
  # Into a temporary GOBIN and renamed: an interrupted build never leaves a
  # file that a later run would take for a finished one.
  gobin="$dir/bin.tmp.$$"
  trap 'rm -rf "$gobin"' EXIT
  # pkg@version ignores any go.mod around, so this is the same build anywhere.
  GOBIN="$gobin" go install -ldflags "-s -w" "github.com/nats-io/nats-server/v2@$NATS_SERVER_VERSION"
  got="$("$gobin/nats-server" --version)"
  if [[ "$got" != "nats-server: $NATS_SERVER_VERSION" ]]; then
    log "built nats-server reports '$got', want 'nats-server: $NATS_SERVER_VERSION'"
    exit 1
  fi
  mv -f "$gobin/nats-server" "$bin"
  rm -rf "$gobin"
  trap - EXIT
  log "nats-server $NATS_SERVER_VERSION: installed in $(took "$t0"), $(($(wc -c <"$bin") / 1000000)) MB"
fi

printf 'export FAAS_NATS_SERVER=%q\n' "$bin"
