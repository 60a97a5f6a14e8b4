#!/usr/bin/env bash
# Builds Argo's workflow-controller and argoexec from the Go module proxy into a
# directory (default bin/argo) and prints that directory.
#
# The binaries are built in a module of their own, a copy of Argo's module
# source, so they get Argo's own dependency versions and the project's go.mod
# is untouched. The copy is needed because upstream
# workflow/executor/osspecific/signal_linux.go is a symlink to signal_darwin.go
# and module zips drop symlinks (argoexec then fails with `undefined: Setpgid`);
# `go build -overlay` cannot patch files in the module cache, so the copy
# restores the file. A cold build takes about 5 to 6 minutes of CPU on 2 cores.
#
# If ARGO_ASSETS is already set, it wins: nothing is built and it is printed as
# is. If both binaries already exist, nothing is rebuilt.
set -euo pipefail

ARGO_VERSION="${ARGO_VERSION:-3.7.3}"
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="${1:-$root/bin/argo}"
mod=github.com/argoproj/argo-workflows/v3

log() { echo "argo: $*" >&2; }

if [[ -n "${ARGO_ASSETS:-}" ]]; then
  for b in workflow-controller argoexec; do
    if [[ ! -x "$ARGO_ASSETS/$b" ]]; then
      log "ARGO_ASSETS=$ARGO_ASSETS has no executable $b; unset it to build the binaries, or point it at a directory that has both"
      exit 1
    fi
  done
  echo "$ARGO_ASSETS"
  exit 0
fi

mkdir -p "$dest"
dest="$(cd "$dest" && pwd)"

if [[ -x "$dest/workflow-controller" && -x "$dest/argoexec" ]]; then
  echo "$dest"
  exit 0
fi

export GOFLAGS=-mod=mod
export CGO_ENABLED=0
work="$dest/.build"
rm -rf "$work"
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT

src="$(go mod download -json "$mod@v$ARGO_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
[[ -d "$src" ]] || { log "cannot download $mod@v$ARGO_VERSION"; exit 1; }
cp -R "$src" "$work/argo"
chmod -R u+w "$work/argo"
osspecific="$work/argo/workflow/executor/osspecific"
if [[ ! -f "$osspecific/signal_linux.go" ]]; then
  cp "$osspecific/signal_darwin.go" "$osspecific/signal_linux.go"
fi

ldflags="-s -w -X $mod.version=v$ARGO_VERSION -X $mod.gitTag=v$ARGO_VERSION -X $mod.gitTreeState=clean -X $mod.buildDate=1970-01-01T00:00:00Z"
for name in workflow-controller argoexec; do
  out="$dest/$name"
  if [[ -x "$out" ]]; then continue; fi
  log "building $name v$ARGO_VERSION (a cold build takes minutes)"
  (cd "$work/argo" && go build -trimpath -o "$out.tmp" -ldflags "$ldflags" "./cmd/$name")
  mv "$out.tmp" "$out"
done
log "workflow-controller and argoexec v$ARGO_VERSION in $dest"
echo "$dest"
