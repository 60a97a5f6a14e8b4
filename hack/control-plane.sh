#!/usr/bin/env bash
# Builds the envtest control-plane binaries (kube-apiserver and etcd),
# kube-controller-manager (garbage collection, namespace deletion) and kubectl
# from the Go module proxy into a directory (default bin/k8s) and
# prints that directory.
#
# The binaries cannot be downloaded as release archives here, so they are
# compiled from source. k8s.io/kubernetes and etcd's server module use replace
# directives to their in-repo staging modules, which `go install` refuses; the
# build therefore goes through a throwaway module that replaces each of them by
# its published release.
#
# If KUBEBUILDER_ASSETS is already set, it wins: nothing is built and it is
# printed as is. If both binaries already exist, nothing is rebuilt.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-3.6.16}"
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="${1:-$root/bin/k8s}"

log() { echo "control-plane: $*" >&2; }

if [[ -n "${KUBEBUILDER_ASSETS:-}" ]]; then
  for b in kube-apiserver etcd; do
    if [[ ! -x "$KUBEBUILDER_ASSETS/$b" ]]; then
      log "KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS has no executable $b; unset it to build the binaries, or point it at a directory that has both"
      exit 1
    fi
  done
  echo "$KUBEBUILDER_ASSETS"
  exit 0
fi

mkdir -p "$dest"
dest="$(cd "$dest" && pwd)"
export GOFLAGS=-mod=mod
export CGO_ENABLED=0

# newmod DIR MODULE: starts a throwaway module in DIR that imports MODULE's main package.
newmod() {
  local dir="$1" pkg="$2"
  rm -rf "$dir"
  mkdir -p "$dir"
  (cd "$dir" && go mod init nsprov.local/controlplane >/dev/null 2>&1)
  cat >"$dir/tools.go" <<GO
//go:build tools

package tools

import _ "$pkg"
GO
}

# build_k8s NAME: builds k8s.io/kubernetes/cmd/NAME at K8S_VERSION.
build_k8s() {
  local name="$1" out="$dest/$1"
  if [[ -x "$out" ]]; then return; fi
  local work="$dest/.build/$name"
  log "building $name v$K8S_VERSION (a cold build takes minutes; kube-apiserver 10 to 20)"
  newmod "$work" "k8s.io/kubernetes/cmd/$name"
  (
    cd "$work"
    local gomod
    gomod="$(go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
    [[ -f "$gomod" ]] || { log "cannot find the go.mod of k8s.io/kubernetes@v$K8S_VERSION"; exit 1; }
    go mod edit -require="k8s.io/kubernetes@v$K8S_VERSION"
    local staging=0
    # Every k8s.io/* module that kubernetes replaces with ./staging/... gets its release instead.
    while read -r mod; do
      go mod edit -replace="$mod=$mod@v0.${K8S_VERSION#1.}"
      staging=$((staging + 1))
    done < <(grep -E '^\s*k8s\.io/[^ ]+ => \./staging/' "$gomod" | awk '{print $1}')
    log "replaced $staging staging modules by their v0.${K8S_VERSION#1.} releases"
    go mod tidy >/dev/null
    local minor="${K8S_VERSION#1.}"; minor="${minor%%.*}"
    local v=k8s.io/component-base/version
    go build -trimpath -o "$out.tmp" -ldflags "-s -w \
      -X $v.gitVersion=v$K8S_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$minor \
      -X $v.gitTreeState=clean -X $v.buildDate=1970-01-01T00:00:00Z" \
      "k8s.io/kubernetes/cmd/$name"
    mv "$out.tmp" "$out"
  )
}

build_etcd() {
  local out="$dest/etcd"
  if [[ -x "$out" ]]; then return; fi
  local work="$dest/.build/etcd"
  log "building etcd v$ETCD_VERSION"
  newmod "$work" go.etcd.io/etcd/server/v3
  (
    cd "$work"
    go mod edit -require="go.etcd.io/etcd/server/v3@v$ETCD_VERSION"
    for m in go.etcd.io/etcd/api/v3 go.etcd.io/etcd/client/pkg/v3 go.etcd.io/etcd/client/v3 go.etcd.io/etcd/pkg/v3; do
      go mod edit -replace="$m=$m@v$ETCD_VERSION"
    done
    go mod tidy >/dev/null
    go build -trimpath -o "$out.tmp" -ldflags "-s -w" go.etcd.io/etcd/server/v3
    mv "$out.tmp" "$out"
  )
}

build_etcd
build_k8s kube-apiserver
build_k8s kubectl
build_k8s kube-controller-manager
rm -rf "$dest/.build"
log "$("$dest/kube-apiserver" --version 2>&1), etcd $("$dest/etcd" --version 2>&1 | head -n1 | awk '{print $3}'), kubectl $("$dest/kubectl" version --client 2>/dev/null | head -n1 | awk '{print $3}'), kube-controller-manager in $dest"
echo "$dest"
