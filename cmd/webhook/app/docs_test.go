package app

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/nsprov/nsprov/hack/gendocs"
)

// repoRoot is the repository root, two directories above this package.
const repoRoot = "../../.."

// The pages these tests keep true, relative to the repository root.
const (
	cliReference    = "docs/cli.md"
	metricReference = "docs/reference.md"
)

func readPage(t *testing.T, page string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, filepath.FromSlash(page)))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// seeAlso links each command's section of the CLI reference to the page that
// explains it (relative to docs/).
var seeAlso = map[string]string{
	"nsprov serve":          "install.md#running-nsprov-serve",
	"nsprov audit":          "auditing.md#auditing-denied-requests",
	"nsprov policy":         "policies.md#trying-a-policy-offline-nsprov-policy",
	"nsprov policy eval":    "policies.md#trying-a-policy-offline-nsprov-policy",
	"nsprov policy test":    "policies.md#trying-a-policy-offline-nsprov-policy",
	"nsprov plugin":         "plugin.md",
	"nsprov plugin request": "plugin.md#requesting-a-namespace",
	"nsprov plugin status":  "plugin.md#following-provisioning",
	"nsprov plugin why":     "plugin.md#why-was-it-denied",
}

// TestCLIReferenceIsCurrent fails when docs/cli.md is not what the command
// tree generates; `make docs` (NSPROV_UPDATE_DOCS=1) rewrites it.
func TestCLIReferenceIsCurrent(t *testing.T) {
	gendocs.CheckGenerated(t, filepath.Join(repoRoot, filepath.FromSlash(cliReference)), gendocs.CLIReference(NewCommand(streams{}), seeAlso))
}

// TestCLIReferenceDocumentsEveryFlag keeps the CLI reference whole: every
// flag of every command appears there as `--name`, so a command the generator
// skipped is noticed.
func TestCLIReferenceDocumentsEveryFlag(t *testing.T) {
	text := readPage(t, cliReference)
	root := NewCommand(streams{})
	var missing []string
	var visit func(path string, flags *pflag.FlagSet)
	visit = func(path string, flags *pflag.FlagSet) {
		flags.VisitAll(func(f *pflag.Flag) {
			documented := regexp.MustCompile("(`|, )--" + regexp.QuoteMeta(f.Name) + "(`|,)")
			if f.Name == "help" || documented.MatchString(text) {
				return
			}
			missing = append(missing, path+" --"+f.Name)
		})
	}
	for _, cmd := range root.Commands() {
		visit(cmd.Name(), cmd.Flags())
		for _, sub := range cmd.Commands() {
			visit(cmd.Name()+" "+sub.Name(), sub.Flags())
		}
	}
	visit("nsprov", root.PersistentFlags())
	if len(missing) > 0 {
		sort.Strings(missing)
		t.Errorf("%s does not document these flags (%s):\n%s", cliReference, gendocs.RegenerateHint, strings.Join(missing, "\n"))
	}
}

var metricName = regexp.MustCompile(`"(nsprov_[a-z_]+)"`)

// TestReferenceDocumentsEveryMetric keeps the metrics table of
// docs/reference.md true: every metric name in nsprov's Go sources appears
// there.
func TestReferenceDocumentsEveryMetric(t *testing.T) {
	text := readPage(t, metricReference)
	found := map[string]bool{}
	for _, dir := range []string{"cmd", "internal"} {
		err := filepath.WalkDir(filepath.Join(repoRoot, dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, m := range metricName.FindAllStringSubmatch(string(data), -1) {
				found[m[1]] = true
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(found) < 5 {
		t.Fatalf("found only %d metric names in the sources; the scan is broken", len(found))
	}
	var missing []string
	for name := range found {
		if !strings.Contains(text, "`"+name) {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		t.Errorf("%s does not document these metrics (add a row to its metrics table):\n%s", metricReference, strings.Join(missing, "\n"))
	}
}
