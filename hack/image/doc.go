// Command nsprov-image builds nsprov's container image from the source tree
// alone, with no Docker daemon and no registry, using go-containerregistry:
// it cross-compiles the static nsprov binary for each platform (as `make
// build` does: CGO_ENABLED=0, -trimpath, the version in -ldflags), puts it on
// an empty base with a numeric non-root user and OCI labels, and writes a
// multi-platform OCI image layout and, per platform, a tarball that `docker
// load` reads. Every timestamp is the given creation time (SOURCE_DATE_EPOCH,
// the commit time under `make image`), so two builds of one commit give one
// digest.
//
// It is a module of its own (hack/image/go.mod) so that go-containerregistry
// and its dependencies stay out of nsprov's go.mod: the image builder is a
// build tool, never part of the nsprov binary. `make image` runs it through
// hack/image.sh.
package main
