#!/usr/bin/env bash
# Builds nsprov's container image with hack/image (go-containerregistry, no
# Docker daemon, no registry) into a directory (default bin/image): a
# multi-platform OCI image layout in DIR/oci and a `docker load`-able tarball
# per platform, DIR/nsprov-ARCH.tar, tagged IMAGE_REPOSITORY:VERSION.
#
# The image builder is a module of its own (hack/image/go.mod), so
# go-containerregistry stays out of nsprov's go.mod; it is compiled into
# bin/nsprov-image on each run (the Go build cache makes that instant).
#
# Environment: VERSION (required, as `make build` stamps it), IMAGE_REPOSITORY
# (default ghcr.io/nsprov/nsprov), IMAGE_PLATFORMS (default
# linux/amd64,linux/arm64), SOURCE_DATE_EPOCH (default: the commit time of
# HEAD, so two builds of one commit give one digest), REVISION (default: HEAD).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
dest="${1:-$root/bin/image}"

log() { echo "image: $*" >&2; }

if [[ -z "${VERSION:-}" ]]; then
  log "VERSION is not set: run \`make image\`, or set VERSION to the version to stamp (e.g. 0.1.0)"
  exit 1
fi
revision="${REVISION:-$(git -C "$root" rev-parse HEAD 2>/dev/null || true)}"
if [[ -z "$revision" ]]; then
  log "not a git checkout: set REVISION to the commit and SOURCE_DATE_EPOCH to its time"
  exit 1
fi
export SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct 2>/dev/null || true)}"
if [[ -z "$SOURCE_DATE_EPOCH" ]]; then
  log "cannot read the commit time: set SOURCE_DATE_EPOCH"
  exit 1
fi

tool="$root/bin/nsprov-image"
(cd "$root/hack/image" && go build -trimpath -o "$tool" .)
mkdir -p "$dest"
log "building $VERSION for ${IMAGE_PLATFORMS:-linux/amd64,linux/arm64} (a cold cross-compile takes minutes)"
"$tool" \
  --source-dir "$root" \
  --out "$dest" \
  --version "$VERSION" \
  --revision "$revision" \
  --repository "${IMAGE_REPOSITORY:-ghcr.io/nsprov/nsprov}" \
  --platform "${IMAGE_PLATFORMS:-linux/amd64,linux/arm64}"
