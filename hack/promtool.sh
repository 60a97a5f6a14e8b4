#!/usr/bin/env bash
# Builds Prometheus' promtool from the Go module proxy into a directory
# (default bin/prometheus) and prints the path of the binary.
#
# `go install pkg@version` builds it as a module of its own, with Prometheus'
# own go.mod and dependency versions, so the project's go.mod is untouched.
# The remove_all_sd build tag leaves out the cloud service-discovery plugins
# (AWS, Azure, GCE, Kubernetes, ...), which `promtool test rules` does not
# use and which would make the build several times longer.
#
# If PROMTOOL is already set, it wins: nothing is built and it is printed as
# is. If the binary already exists, nothing is rebuilt.
set -euo pipefail

PROMETHEUS_VERSION="${PROMETHEUS_VERSION:-3.16.0}"
# Prometheus 3.x publishes its Go module as v0.<major><minor as two digits>.<patch>
# (3.16.0 is v0.316.0).
IFS=. read -r major minor patch <<<"$PROMETHEUS_VERSION"
[[ "$major" == 3 && "$minor" =~ ^[0-9]+$ && "$patch" =~ ^[0-9]+$ ]] || {
  echo "promtool: PROMETHEUS_VERSION=$PROMETHEUS_VERSION: expected a Prometheus 3.x release such as 3.16.0" >&2
  exit 1
}
module_version="v0.$major$(printf '%02d' "$minor").$patch"
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="${1:-$root/bin/prometheus}"
mod=github.com/prometheus/prometheus

log() { echo "promtool: $*" >&2; }

if [[ -n "${PROMTOOL:-}" ]]; then
  if [[ ! -x "$PROMTOOL" ]]; then
    log "PROMTOOL=$PROMTOOL is not an executable; unset it to build promtool, or point it at a promtool binary"
    exit 1
  fi
  echo "$PROMTOOL"
  exit 0
fi

mkdir -p "$dest"
dest="$(cd "$dest" && pwd)"
out="$dest/promtool"
if [[ -x "$out" ]]; then
  echo "$out"
  exit 0
fi

export GOFLAGS=-mod=mod
export CGO_ENABLED=0
work="$dest/.build"
rm -rf "$work"
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT

ldflags="-s -w -X github.com/prometheus/common/version.Version=$PROMETHEUS_VERSION -X github.com/prometheus/common/version.Branch=HEAD -X github.com/prometheus/common/version.BuildUser=nsprov -X github.com/prometheus/common/version.BuildDate=19700101-00:00:00"
log "building promtool $PROMETHEUS_VERSION ($mod $module_version; a cold build takes minutes)"
GOBIN="$work" go install -trimpath -tags remove_all_sd -ldflags "$ldflags" "$mod/cmd/promtool@$module_version"
mv "$work/promtool" "$out"
log "promtool $PROMETHEUS_VERSION in $dest"
echo "$out"
