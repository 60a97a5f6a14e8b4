package gendocs

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// chartDir is the chart whose README is generated.
var chartDir = filepath.Join(repoRoot, "charts", "nsprov")

// TestChartReadmeIsCurrent fails when charts/nsprov/README.md is not what
// Chart.yaml and values.yaml generate; with NSPROV_UPDATE_DOCS=1 it rewrites it.
func TestChartReadmeIsCurrent(t *testing.T) {
	want, err := ChartReadme(chartDir)
	if err != nil {
		t.Fatalf("generating the chart's README: %v", err)
	}
	CheckGenerated(t, filepath.Join(chartDir, "README.md"), want)
}

func TestChartValues(t *testing.T) {
	values := `# The file's introduction.
# More of it.

image:
  # repository: the image.
  # Second line.
  repository: x
  # tag: empty uses appVersion.
  tag: ""

# nodeSelector, tolerations: where pods run.
nodeSelector: {}
tolerations: []

kube:
  # qps and burst: requests per second.
  qps: 50
  burst: 100

# resources: of the container.
resources:
  requests:
    cpu: 100m

ref:
  # ref: an issuer.
  issuer:
    # name: its name.
    name: ""
  # ratio: a share.
  ratio: 0.5
  # on: a switch.
  on: true
`
	got, err := ChartValues([]byte(values))
	if err != nil {
		t.Fatal(err)
	}
	want := []Value{
		{"image.repository", "string", `"x"`, "the image. Second line."},
		{"image.tag", "string", `""`, "empty uses appVersion."},
		{"nodeSelector", "object", `{}`, "where pods run."},
		{"tolerations", "list", `[]`, "where pods run."},
		{"kube.qps", "int", `50`, "requests per second."},
		{"kube.burst", "int", `100`, "requests per second."},
		{"resources", "object", `{"requests":{"cpu":"100m"}}`, "of the container."},
		{"ref.issuer", "object", "", "an issuer."},
		{"ref.issuer.name", "string", `""`, "its name."},
		{"ref.ratio", "float", `0.5`, "a share."},
		{"ref.on", "bool", `true`, "a switch."},
	}
	if !slices.Equal(got, want) {
		t.Errorf("ChartValues =\n%q\nwant\n%q", got, want)
	}
}

func TestChartValuesUndocumented(t *testing.T) {
	_, err := ChartValues([]byte("# a: documented.\na: 1\nb: 2\nc:\n  # d: documented.\n  d: 3\n  e: 4\n"))
	if err == nil {
		t.Fatal("ChartValues accepted values without comments")
	}
	for _, key := range []string{"b has no comment", "c.e has no comment"} {
		if !strings.Contains(err.Error(), key) {
			t.Errorf("error %q does not say %q", err, key)
		}
	}
	if strings.Contains(err.Error(), "c.d") {
		t.Errorf("error %q names a documented value", err)
	}
}
