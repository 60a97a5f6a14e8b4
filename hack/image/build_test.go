package main

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// sourceDir is nsprov's source tree: this module lives in hack/image.
const sourceDir = "../.."

// chartValue returns the first value of key (a YAML line `key: value`,
// after the line matching after) in a chart file: enough for the few scalar
// settings the image must agree with, without a YAML library in this module.
func chartValue(t *testing.T, file, after, key string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(sourceDir, "charts", "nsprov", file))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if after != "" {
		i := regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(after) + `:`).FindStringIndex(s)
		if i == nil {
			t.Fatalf("%s has no %s:", file, after)
		}
		s = s[i[1]:]
	}
	m := regexp.MustCompile(`(?m)^\s*` + regexp.QuoteMeta(key) + `:\s*"?([^"\s#]+)"?`).FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("%s has no %s: after %s:", file, key, after)
	}
	return m[1]
}

// TestImage builds the image twice the way a release does (the chart's
// appVersion as the version) and checks the two digests agree, the OCI
// layout's index, each image's config and layer, the docker-load tarballs,
// and that the binary in the image of this machine's architecture runs
// `nsprov version` with that version.
func TestImage(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-compiles nsprov twice for two platforms")
	}
	version := chartValue(t, "Chart.yaml", "", "appVersion")
	repository := chartValue(t, "values.yaml", "image", "repository")
	if repository != DefaultRepository {
		t.Errorf("the chart's image.repository is %s, the image builder publishes %s", repository, DefaultRepository)
	}
	opts := *NewOptions()
	opts.SourceDir = sourceDir
	opts.Version = version
	opts.Revision = "0123456789abcdef0123456789abcdef01234567"
	opts.Epoch = 1767225600 // 2026-01-01T00:00:00Z
	created := time.Unix(opts.Epoch, 0).UTC()

	var results []*Result
	for range 2 {
		opts.OutDir = t.TempDir()
		res, err := Build(context.Background(), opts)
		if err != nil {
			t.Fatal(err)
		}
		results = append(results, res)
	}
	if results[0].Digest != results[1].Digest {
		t.Errorf("two builds of one source gave two index digests: %s and %s", results[0].Digest, results[1].Digest)
	}
	for _, p := range opts.Platforms {
		if results[0].Images[p] != results[1].Images[p] {
			t.Errorf("two builds of one source gave two %s digests: %s and %s", p, results[0].Images[p], results[1].Images[p])
		}
	}
	res := results[0]

	lp, err := layout.FromPath(res.OCIDir)
	if err != nil {
		t.Fatal(err)
	}
	top, err := lp.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	topManifest, err := top.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(topManifest.Manifests) != 1 || topManifest.Manifests[0].Digest != res.Digest ||
		topManifest.Manifests[0].Annotations["org.opencontainers.image.ref.name"] != version {
		t.Fatalf("the layout's index.json should list the image index %s tagged %s: %+v", res.Digest, version, topManifest.Manifests)
	}
	index, err := top.ImageIndex(res.Digest)
	if err != nil {
		t.Fatal(err)
	}
	im, err := index.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if im.MediaType != types.OCIImageIndex {
		t.Errorf("index media type %s, want %s", im.MediaType, types.OCIImageIndex)
	}
	wantLabels := map[string]string{
		LabelSource:   DefaultSource,
		LabelRevision: opts.Revision,
		LabelVersion:  version,
		LabelCreated:  "2026-01-01T00:00:00Z",
		LabelTitle:    "nsprov",
	}
	checkMap(t, "index annotations", im.Annotations, wantLabels)
	var platforms []string
	for _, d := range im.Manifests {
		if d.Platform == nil {
			t.Fatalf("manifest %s has no platform", d.Digest)
		}
		platforms = append(platforms, d.Platform.String())
	}
	if strings.Join(platforms, ",") != "linux/amd64,linux/arm64" {
		t.Errorf("platforms %v, want linux/amd64 and linux/arm64", platforms)
	}

	uid, gid := chartValue(t, "templates/controller/deployment.yaml", "", "runAsUser"), chartValue(t, "templates/controller/deployment.yaml", "", "runAsGroup")
	for _, d := range im.Manifests {
		p := d.Platform.String()
		t.Run(p, func(t *testing.T) {
			if d.Digest != res.Images[p] {
				t.Errorf("index lists %s, Build reported %s", d.Digest, res.Images[p])
			}
			img, err := index.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			m, err := img.Manifest()
			if err != nil {
				t.Fatal(err)
			}
			if m.MediaType != types.OCIManifestSchema1 || m.Config.MediaType != types.OCIConfigJSON || len(m.Layers) != 1 || m.Layers[0].MediaType != types.OCILayer {
				t.Errorf("manifest %+v: want OCI media types and one layer", m)
			}
			checkMap(t, "manifest annotations", m.Annotations, wantLabels)
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if cf.OS+"/"+cf.Architecture != p {
				t.Errorf("config platform %s/%s, want %s", cf.OS, cf.Architecture, p)
			}
			if !cf.Created.Time.Equal(created) {
				t.Errorf("created %s, want SOURCE_DATE_EPOCH %s", cf.Created.Time, created)
			}
			if strings.Join(cf.Config.Entrypoint, " ") != "/nsprov" || len(cf.Config.Cmd) != 0 {
				t.Errorf("entrypoint %q cmd %q, want [/nsprov] and no cmd (the chart passes serve and its flags)", cf.Config.Entrypoint, cf.Config.Cmd)
			}
			if cf.Config.User != uid+":"+gid {
				t.Errorf("user %q, want the chart's runAsUser:runAsGroup %s:%s", cf.Config.User, uid, gid)
			}
			checkMap(t, "labels", cf.Config.Labels, wantLabels)
			for _, h := range cf.History {
				if !h.Created.Time.Equal(created) {
					t.Errorf("history %q created %s, want %s", h.CreatedBy, h.Created.Time, created)
				}
			}

			files := layerFiles(t, img)
			for path, want := range map[string]struct {
				mode     int64
				uid, gid int
			}{
				"nsprov":        {0o755, 0, 0},
				"etc/passwd":    {0o644, 0, 0},
				"etc/group":     {0o644, 0, 0},
				"tmp/":          {0o1777, 0, 0},
				"home/nonroot/": {0o700, UID, GID},
			} {
				h, ok := files[path]
				if !ok {
					t.Errorf("the layer has no %s", path)
					continue
				}
				if h.Mode != want.mode || h.Uid != want.uid || h.Gid != want.gid || !h.ModTime.Equal(created) {
					t.Errorf("%s: mode %o owner %d:%d time %s, want %o %d:%d %s", path, h.Mode, h.Uid, h.Gid, h.ModTime, want.mode, want.uid, want.gid, created)
				}
			}
			if !strings.Contains(string(files["etc/passwd"].data), fmt.Sprintf(":%s:%s:", uid, gid)) {
				t.Errorf("etc/passwd has no user %s:%s:\n%s", uid, gid, files["etc/passwd"].data)
			}
			bin := filepath.Join(t.TempDir(), "nsprov")
			if err := os.WriteFile(bin, files["nsprov"].data, 0o755); err != nil {
				t.Fatal(err)
			}
			checkStatic(t, bin, d.Platform.Architecture)
			if d.Platform.Architecture == runtime.GOARCH {
				out, err := exec.Command(bin, "version").CombinedOutput()
				if err != nil {
					t.Fatalf("nsprov version from the %s layer: %v\n%s", p, err, out)
				}
				if got, want := string(out), "nsprov "+version+"\n"; got != want {
					t.Errorf("nsprov version from the %s layer printed %q, want %q (the chart's appVersion)", p, got, want)
				}
			}

			checkTarball(t, res.Tarballs[p], opts.Repository+":"+version, img)
		})
	}
	if _, ok := res.Images["linux/"+runtime.GOARCH]; !ok {
		t.Errorf("no image for this machine's linux/%s: nothing ran nsprov version", runtime.GOARCH)
	}
}

func checkMap(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %s=%q, want %q", what, k, got[k], v)
		}
	}
}

type file struct {
	*tar.Header
	data []byte
}

func layerFiles(t *testing.T, img v1.Image) map[string]file {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	files := map[string]file{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name] = file{h, data}
	}
}

// checkStatic checks bin is an ELF executable for goarch with no program
// interpreter (statically linked, so it runs on an empty base).
func checkStatic(t *testing.T, bin, goarch string) {
	t.Helper()
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	machine := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}[goarch]
	if f.Machine != machine {
		t.Errorf("binary for %s is for %s", goarch, f.Machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Errorf("binary for %s is dynamically linked", goarch)
		}
	}
}

// checkTarball reads the docker-load tarball as docker does: the tag in its
// manifest.json, the same config and layer as the OCI image.
func checkTarball(t *testing.T, path, tag string, want v1.Image) {
	t.Helper()
	ref, err := name.NewTag(tag)
	if err != nil {
		t.Fatal(err)
	}
	img, err := tarball.ImageFromPath(path, &ref)
	if err != nil {
		t.Fatalf("%s has no image tagged %s: %v", path, tag, err)
	}
	for what, get := range map[string]func(v1.Image) ([]byte, error){
		"config": func(i v1.Image) ([]byte, error) { return i.RawConfigFile() },
		"layer": func(i v1.Image) ([]byte, error) {
			ls, err := i.Layers()
			if err != nil {
				return nil, err
			}
			d, err := ls[0].Digest()
			return []byte(d.String()), err
		},
	} {
		a, err := get(img)
		if err != nil {
			t.Fatal(err)
		}
		b, err := get(want)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s: the tarball's %s differs from the OCI image's", path, what)
		}
	}
}

func TestValidate(t *testing.T) {
	valid := func() Options {
		o := *NewOptions()
		o.SourceDir = sourceDir
		o.Version = "0.1.0"
		o.Revision = "abc"
		o.Epoch = 0
		return o
	}
	for _, tc := range []struct {
		name   string
		change func(*Options)
		want   string
	}{
		{"valid", func(*Options) {}, ""},
		{"no epoch", func(o *Options) { o.Epoch = -1 }, "--source-date-epoch is required"},
		{"bad epoch variable", func(o *Options) {
			o.Epoch = -1
			o.epochErr = errors.New(`SOURCE_DATE_EPOCH="x" is not a number`)
		}, `SOURCE_DATE_EPOCH="x"`},
		{"version not a tag", func(o *Options) { o.Version = "v1+build" }, "not a valid image tag"},
		{"no version", func(o *Options) { o.Version = "" }, "not a valid image tag"},
		{"no revision", func(o *Options) { o.Revision = "" }, "--revision is required"},
		{"bad repository", func(o *Options) { o.Repository = "Ghcr.io/UPPER" }, "--repository"},
		{"windows", func(o *Options) { o.Platforms = []string{"windows/amd64"} }, "expected linux/ARCH"},
		{"variant", func(o *Options) { o.Platforms = []string{"linux/arm/v7"} }, "expected linux/ARCH"},
		{"twice", func(o *Options) { o.Platforms = []string{"linux/amd64", "linux/amd64"} }, "twice"},
		{"no platform", func(o *Options) { o.Platforms = nil }, "--platform is empty"},
		{"not the source", func(o *Options) { o.SourceDir = t.TempDir() }, "not nsprov's source tree"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := valid()
			tc.change(&o)
			err := o.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}
