package main

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

const (
	// DefaultRepository is the repository a release publishes the image to;
	// the chart's image.repository defaults to it.
	DefaultRepository = "ghcr.io/nsprov/nsprov"
	// DefaultSource is the source repository of the source label.
	DefaultSource = "https://github.com/nsprov/nsprov"
	// Entrypoint is the path of the nsprov binary in the image.
	Entrypoint = "/nsprov"
	// UID and GID are the numeric user and group the image runs as: the
	// chart's securityContext runAsUser and runAsGroup (distroless' nonroot).
	UID, GID = 65532, 65532
	// versionVariable is the variable `make build` stamps the version into.
	versionVariable = "github.com/nsprov/nsprov/cmd/webhook/app.Version"
)

// Label keys of the OCI image spec's annotations.
const (
	LabelSource   = "org.opencontainers.image.source"
	LabelRevision = "org.opencontainers.image.revision"
	LabelVersion  = "org.opencontainers.image.version"
	LabelCreated  = "org.opencontainers.image.created"
	LabelTitle    = "org.opencontainers.image.title"
	labelRefName  = "org.opencontainers.image.ref.name"
)

// Options says what to build and where.
type Options struct {
	// SourceDir is nsprov's source tree, the directory of its go.mod.
	SourceDir string
	// OutDir receives the OCI layout (OutDir/oci), the docker-load tarballs
	// (OutDir/nsprov-ARCH.tar) and the compiled binaries (OutDir/OS_ARCH/).
	OutDir string
	// Platforms are the os/arch pairs to build, linux only.
	Platforms []string
	// Version is stamped into the binary (what `nsprov version` prints), the
	// version label and the tag of the tarballs and the layout.
	Version string
	// Revision is the git commit of the revision label.
	Revision string
	// Source is the URL of the source label.
	Source string
	// Repository is the image repository the tarballs are tagged with.
	Repository string
	// Epoch is the creation time of the image and of every file in it, in
	// seconds since 1970 (SOURCE_DATE_EPOCH).
	Epoch int64
	// Go is the go command that compiles nsprov.
	Go string

	epochErr error
}

// tagPattern is the syntax of an image tag.
var tagPattern = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)

// Validate reports options that cannot build an image, saying how to fix them.
func (o *Options) Validate() error {
	var errs []error
	if o.Epoch < 0 {
		if o.epochErr != nil {
			errs = append(errs, o.epochErr)
		} else {
			errs = append(errs, errors.New("--source-date-epoch is required (or SOURCE_DATE_EPOCH): the commit time, git log -1 --format=%ct, makes builds of one commit reproducible"))
		}
	}
	if !tagPattern.MatchString(o.Version) {
		errs = append(errs, fmt.Errorf("--version %q is not a valid image tag: use letters, digits, '_', '.' and '-' (at most 128, not starting with '.' or '-'), e.g. 0.1.0", o.Version))
	}
	if o.Revision == "" {
		errs = append(errs, errors.New("--revision is required: the git commit the image is built from"))
	}
	if o.Source == "" {
		errs = append(errs, errors.New("--source is required: the URL of the source repository"))
	}
	if _, err := name.NewRepository(o.Repository, name.StrictValidation); err != nil {
		errs = append(errs, fmt.Errorf("--repository %q: %w", o.Repository, err))
	}
	if len(o.Platforms) == 0 {
		errs = append(errs, errors.New("--platform is empty: give at least one, e.g. linux/amd64"))
	}
	seen := map[string]bool{}
	for _, p := range o.Platforms {
		if _, err := parsePlatform(p); err != nil {
			errs = append(errs, err)
		}
		if seen[p] {
			errs = append(errs, fmt.Errorf("--platform lists %s twice", p))
		}
		seen[p] = true
	}
	if _, err := os.Stat(filepath.Join(o.SourceDir, "cmd", "webhook")); err != nil {
		errs = append(errs, fmt.Errorf("--source-dir %q is not nsprov's source tree (no cmd/webhook): %w", o.SourceDir, err))
	}
	if o.OutDir == "" {
		errs = append(errs, errors.New("--out is required"))
	}
	return errors.Join(errs...)
}

func parsePlatform(s string) (*v1.Platform, error) {
	p, err := v1.ParsePlatform(s)
	if err != nil || p.OS != "linux" || p.Architecture == "" || p.Variant != "" || p.OSVersion != "" {
		return nil, fmt.Errorf("--platform %q: expected linux/ARCH with a Go GOARCH, e.g. linux/amd64 or linux/arm64", s)
	}
	return &v1.Platform{OS: p.OS, Architecture: p.Architecture}, nil
}

// Result is what Build wrote.
type Result struct {
	// Digest is the digest of the multi-platform image index.
	Digest v1.Hash
	// OCIDir is the OCI image layout holding the index.
	OCIDir string
	// Platforms are the built platforms, in index order.
	Platforms []string
	// Images are the manifest digests by platform.
	Images map[string]v1.Hash
	// Tarballs are the docker-load tarballs by platform.
	Tarballs map[string]string
}

// Build compiles nsprov for each platform and writes the image index as an
// OCI layout and each platform's image as a docker-load tarball.
func Build(ctx context.Context, o Options) (*Result, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	created := time.Unix(o.Epoch, 0).UTC()
	tag, err := name.NewTag(o.Repository+":"+o.Version, name.StrictValidation)
	if err != nil {
		return nil, fmt.Errorf("tagging %s:%s: %w", o.Repository, o.Version, err)
	}
	annotations := map[string]string{
		LabelSource:   o.Source,
		LabelRevision: o.Revision,
		LabelVersion:  o.Version,
		LabelCreated:  created.Format(time.RFC3339),
		LabelTitle:    "nsprov",
	}
	res := &Result{
		OCIDir:   filepath.Join(o.OutDir, "oci"),
		Images:   map[string]v1.Hash{},
		Tarballs: map[string]string{},
	}
	index := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for _, p := range o.Platforms {
		platform, _ := parsePlatform(p)
		bin, err := compile(ctx, o, platform)
		if err != nil {
			return nil, err
		}
		img, err := image(bin, platform, created, annotations)
		if err != nil {
			return nil, fmt.Errorf("building the %s image: %w", p, err)
		}
		digest, err := img.Digest()
		if err != nil {
			return nil, fmt.Errorf("building the %s image: %w", p, err)
		}
		tarPath := filepath.Join(o.OutDir, "nsprov-"+platform.Architecture+".tar")
		if err := tarball.WriteToFile(tarPath, tag, img); err != nil {
			return nil, fmt.Errorf("writing %s: %w", tarPath, err)
		}
		index = mutate.AppendManifests(index, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: platform},
		})
		res.Platforms = append(res.Platforms, p)
		res.Images[p] = digest
		res.Tarballs[p] = tarPath
	}
	index = mutate.Annotations(index, annotations).(v1.ImageIndex)
	if res.Digest, err = index.Digest(); err != nil {
		return nil, fmt.Errorf("building the image index: %w", err)
	}
	// A fresh layout each time: layout.Write keeps blobs of earlier builds.
	if err := os.RemoveAll(res.OCIDir); err != nil {
		return nil, err
	}
	lp, err := layout.Write(res.OCIDir, empty.Index)
	if err != nil {
		return nil, fmt.Errorf("writing the OCI layout %s: %w", res.OCIDir, err)
	}
	if err := lp.AppendIndex(index, layout.WithAnnotations(map[string]string{labelRefName: o.Version})); err != nil {
		return nil, fmt.Errorf("writing the OCI layout %s: %w", res.OCIDir, err)
	}
	if err := os.WriteFile(filepath.Join(o.OutDir, "digest"), []byte(res.Digest.String()+"\n"), 0o644); err != nil {
		return nil, err
	}
	return res, nil
}

// compile builds the static nsprov binary for platform as `make build` does
// and returns its path.
func compile(ctx context.Context, o Options, platform *v1.Platform) (string, error) {
	out, err := filepath.Abs(filepath.Join(o.OutDir, platform.OS+"_"+platform.Architecture, "nsprov"))
	if err != nil {
		return "", err
	}
	ldflags := "-s -w -X " + versionVariable + "=" + o.Version
	cmd := exec.CommandContext(ctx, o.Go, "build", "-trimpath", "-ldflags", ldflags, "-o", out, "./cmd/webhook")
	cmd.Dir = o.SourceDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+platform.OS, "GOARCH="+platform.Architecture)
	cmd.Stdout = os.Stderr
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("compiling nsprov for %s/%s (%s): %w", platform.OS, platform.Architecture, strings.Join(cmd.Args, " "), err)
	}
	return out, nil
}

// image puts the binary at bin on an empty base.
func image(bin string, platform *v1.Platform, created time.Time, labels map[string]string) (v1.Image, error) {
	layer, err := rootLayer(bin, created)
	if err != nil {
		return nil, err
	}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History: v1.History{
			Created:   v1.Time{Time: created},
			CreatedBy: "nsprov-image: nsprov at " + Entrypoint + ", user " + fmt.Sprintf("%d:%d", UID, GID),
			Comment:   "built by make image (hack/image)",
		},
	})
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS = platform.OS
	cf.Architecture = platform.Architecture
	cf.Created = v1.Time{Time: created}
	cf.Config = v1.Config{
		Entrypoint: []string{Entrypoint},
		User:       fmt.Sprintf("%d:%d", UID, GID),
		WorkingDir: "/",
		Labels:     labels,
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, err
	}
	return mutate.Annotations(img, labels).(v1.Image), nil
}

// rootLayer is the image's only layer: the binary, the nonroot user's
// passwd and group entries (for tools that look the user up), its home and
// a world-writable /tmp, every entry owned by root but the home and dated
// created. Go's archive/tar writes the entries: go-containerregistry's
// file-map layer cannot set modes or owners.
func rootLayer(bin string, created time.Time) (v1.Layer, error) {
	binary, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	passwd := fmt.Sprintf("root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", UID, GID)
	group := fmt.Sprintf("root:x:0:\nnonroot:x:%d:\n", GID)
	type entry struct {
		name     string
		mode     int64
		uid, gid int
		data     []byte
		dir      bool
	}
	entries := []entry{
		{name: "etc/", mode: 0o755, dir: true},
		{name: "etc/group", mode: 0o644, data: []byte(group)},
		{name: "etc/passwd", mode: 0o644, data: []byte(passwd)},
		{name: "home/", mode: 0o755, dir: true},
		{name: "home/nonroot/", mode: 0o700, uid: UID, gid: GID, dir: true},
		{name: strings.TrimPrefix(Entrypoint, "/"), mode: 0o755, data: binary},
		{name: "tmp/", mode: 0o1777, dir: true},
	}
	slices.SortFunc(entries, func(a, b entry) int { return strings.Compare(a.name, b.name) })
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{
			Name: e.name, Mode: e.mode, Uid: e.uid, Gid: e.gid, ModTime: created,
			Typeflag: tar.TypeReg, Size: int64(len(e.data)),
		}
		if e.dir {
			h.Typeflag = tar.TypeDir
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching)
}
