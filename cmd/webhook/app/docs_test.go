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
)

// repoRoot is the repository root, two directories above this package.
const repoRoot = "../../.."

func readme(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// TestReadmeDocumentsEveryFlag keeps the README's flag tables true: every flag
// of every command appears there as `--name`.
func TestReadmeDocumentsEveryFlag(t *testing.T) {
	text := readme(t)
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
		t.Errorf("README.md does not document these flags (add a row with `--name` to the command's table):\n%s", strings.Join(missing, "\n"))
	}
}

var metricName = regexp.MustCompile(`"(nsprov_[a-z_]+)"`)

// TestReadmeDocumentsEveryMetric keeps the README's metrics table true: every
// metric name in nsprov's Go sources appears there.
func TestReadmeDocumentsEveryMetric(t *testing.T) {
	text := readme(t)
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
		t.Errorf("README.md does not document these metrics:\n%s", strings.Join(missing, "\n"))
	}
}
