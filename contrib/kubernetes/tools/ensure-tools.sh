#!/usr/bin/env bash
# ensure-tools.sh — builds and caches the binaries that contrib/kubernetes's
# tests run as a real control plane (package kubetest):
#
#   kube-apiserver  built from the Go module proxy by the tools module beside
#                   this script (tools/kube-apiserver/go.mod); no prebuilt
#                   binary can be downloaded on these machines.
#   kwok            the kubelet stand-in, `go install`ed at a fixed version.
#   stages.yaml     kwok's "fast" node and pod stages, taken from the kwok
#                   module source in the module cache.
#
# Everything goes into a cache keyed by version, so a later run (and a later
# session on the same machine) skips what is there:
#   ${FAAS_TOOLS_CACHE:-$HOME/.cache/faasplane/tools}/kube-apiserver-v1.37.2/kube-apiserver
#   ${FAAS_TOOLS_CACHE:-$HOME/.cache/faasplane/tools}/kwok-v0.8.0/kwok
#   ${FAAS_TOOLS_CACHE:-$HOME/.cache/faasplane/tools}/kwok-v0.8.0/stages.yaml
#
# Progress and timings go to stderr; stdout gets only the three paths as
# export lines, so a script can take them with
#   eval "$(contrib/kubernetes/tools/ensure-tools.sh)"
#
# Costs on a 2-core machine: kube-apiserver with a cold GOCACHE 5-10 min
# (4 min 46 s quiet, 9 min 16 s with another job on one core), 2.4 GB peak
# RSS, a 119 MB binary, ~12 s with the GOCACHE warm; kwok ~2-3 min cold.
# The versions here must match kubetest/tools.go (TestToolVersionsMatchScript
# checks that).
set -euo pipefail

KUBE_VERSION=v1.37.2
KWOK_VERSION=v0.8.0

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${FAAS_TOOLS_CACHE:-$HOME/.cache/faasplane/tools}"
apiserver_dir="$cache/kube-apiserver-$KUBE_VERSION"
kwok_dir="$cache/kwok-$KWOK_VERSION"
apiserver="$apiserver_dir/kube-apiserver"
kwok="$kwok_dir/kwok"
stages="$kwok_dir/stages.yaml"

log() { printf 'ensure-tools: %s\n' "$*" >&2; }
now() { date +%s.%N; }
took() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f s", b - a }'; }

mkdir -p "$apiserver_dir" "$kwok_dir"

# Two test binaries (or a test and CI's own step) may get here at once: one
# builds, the other waits and then finds everything in place.
exec 9>"$cache/.lock"
if ! flock -w 1800 9; then
  log "timed out waiting for $cache/.lock"
  exit 1
fi

# Go settings of the caller (a go.work, -mod=vendor, -race) must not leak
# into these builds; -buildvcs=false because the tools module sits inside
# this repository's git tree and its status is no part of the binary. CGO
# off: static binaries, no C toolchain needed, as kube-apiserver is released.
export GOWORK=off GOFLAGS=-buildvcs=false CGO_ENABLED=0

if [[ -x "$apiserver" ]]; then
  log "kube-apiserver $KUBE_VERSION: cached at $apiserver"
else
  log "kube-apiserver $KUBE_VERSION: building (cold GOCACHE: 5-10 min and 2.4 GB on 2 cores; warm: ~12 s)"
  t0="$(now)"
  # Build to a temporary name and rename: an interrupted build never leaves
  # a file that a later run would take for a finished one.
  tmp="$apiserver.tmp.$$"
  trap 'rm -f "$tmp"' EXIT
  (
    cd "$here/kube-apiserver"
    ldflags="-s -w"
    ldflags+=" -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION"
    ldflags+=" -X k8s.io/component-base/version.gitMajor=1"
    ldflags+=" -X k8s.io/component-base/version.gitMinor=37"
    go build -ldflags "$ldflags" -o "$tmp" k8s.io/kubernetes/cmd/kube-apiserver
  )
  got="$("$tmp" --version)"
  if [[ "$got" != "Kubernetes $KUBE_VERSION" ]]; then
    log "built kube-apiserver reports '$got', want 'Kubernetes $KUBE_VERSION'"
    exit 1
  fi
  mv -f "$tmp" "$apiserver"
  trap - EXIT
  log "kube-apiserver $KUBE_VERSION: built in $(took "$t0"), $(($(wc -c <"$apiserver") / 1000000)) MB"
fi

if [[ -x "$kwok" ]]; then
  log "kwok $KWOK_VERSION: cached at $kwok"
else
  log "kwok $KWOK_VERSION: installing (cold: 2-3 min)"
  t0="$(now)"
  gobin="$kwok_dir/bin.tmp.$$"
  trap 'rm -rf "$gobin"' EXIT
  # pkg@version ignores any go.mod around, so this is the same build anywhere.
  GOBIN="$gobin" go install "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  mv -f "$gobin/kwok" "$kwok"
  rm -rf "$gobin"
  trap - EXIT
  log "kwok $KWOK_VERSION: installed in $(took "$t0")"
fi

if [[ -s "$stages" ]]; then
  log "kwok stages: cached at $stages"
else
  t0="$(now)"
  # go install has put the module source in the module cache; download is a
  # no-op then, and tells where it is.
  src="$(go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  if [[ -z "$src" || ! -d "$src/kustomize/stage" ]]; then
    log "kwok $KWOK_VERSION source not found in the module cache (got '$src')"
    exit 1
  fi
  tmp="$stages.tmp.$$"
  trap 'rm -f "$tmp"' EXIT
  # Node turns Ready; pods go Running, Jobs' pods complete, and a pod being
  # deleted is removed (what a kubelet does). Joined as one YAML stream.
  first=1
  for f in node/fast/node-initialize.yaml pod/fast/pod-ready.yaml \
    pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    # Each file ends in a newline, so a separator line can follow directly.
    if [[ $first == 0 ]]; then echo '---'; fi
    first=0
    cat "$src/kustomize/stage/$f"
  done >"$tmp"
  mv -f "$tmp" "$stages"
  trap - EXIT
  log "kwok stages: written in $(took "$t0") to $stages"
fi

printf 'export FAAS_KUBE_APISERVER=%q\n' "$apiserver"
printf 'export FAAS_KWOK=%q\n' "$kwok"
printf 'export FAAS_KWOK_STAGES=%q\n' "$stages"
