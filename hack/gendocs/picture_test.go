package gendocs

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
)

// PictureSection is the README section whose ```mermaid block draws nsprov's
// packages.
const PictureSection = "## How it fits together"

// repoRoot is the repository root, two directories above this package.
const repoRoot = "../.."

// TestReadmePictureMatchesImports checks README's package picture against
// `go list`: every arrow is an import, every import between nsprov's own
// packages that the nsprov binary is built from is drawn, and every such package
// is a node. When packages move, edit the picture until this passes.
func TestReadmePictureMatchesImports(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	drawnPkgs, drawnEdges, err := Picture(string(data), PictureSection)
	if err != nil {
		t.Fatalf("README.md: %v", err)
	}
	module, imports := productImports(t)
	if len(imports) < 3 {
		t.Fatalf("go list found only %d of nsprov's packages; the listing is broken", len(imports))
	}

	var problems []string
	for _, e := range drawnEdges {
		deps, ok := imports[e.From]
		switch {
		case !ok:
			problems = append(problems, "the arrow "+e.From+" --> "+e.To+" starts at a package that is not one of nsprov's (outside test/ and hack/)")
		case !slices.Contains(deps, e.To):
			problems = append(problems, "the arrow "+e.From+" --> "+e.To+" is drawn, but "+e.From+" does not import "+module+"/"+e.To)
		}
	}
	for pkg, deps := range imports {
		if !slices.Contains(drawnPkgs, pkg) {
			problems = append(problems, "the package "+pkg+" is not drawn; add a node for it")
		}
		for _, d := range deps {
			if !slices.Contains(drawnEdges, Edge{From: pkg, To: d}) {
				problems = append(problems, pkg+" imports "+d+", but the picture has no arrow "+pkg+" --> "+d)
			}
		}
	}
	for _, p := range drawnPkgs {
		if _, ok := imports[p]; !ok {
			problems = append(problems, "the node "+p+" is not one of nsprov's packages")
		}
	}
	if len(problems) > 0 {
		sort.Strings(problems)
		t.Errorf("README.md's package picture (section %q) does not match `go list` imports:\n%s", PictureSection, strings.Join(problems, "\n"))
	}
}

// productImports lists nsprov's packages outside test/ and hack/ that the
// nsprov binary is built from, with the
// imports among them, as paths relative to the module.
func productImports(t *testing.T) (string, map[string][]string) {
	t.Helper()
	mod, err := exec.Command("go", "list", "-m").Output()
	if err != nil {
		t.Fatalf("go list -m: %v", err)
	}
	module := strings.TrimSpace(string(mod))
	cmd := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, "./...")
	cmd.Dir = repoRoot
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	// Only the packages the nsprov binary is built from: test helpers such
	// as internal/testutil are not drawn.
	deps := exec.Command("go", "list", "-deps", "./cmd/webhook")
	deps.Dir = repoRoot
	depsOut, err := deps.Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	inBinary := map[string]bool{}
	for _, p := range strings.Fields(string(depsOut)) {
		inBinary[p] = true
	}
	rel := func(p string) (string, bool) {
		r, ok := strings.CutPrefix(p, module+"/")
		if !ok || !inBinary[p] || r == "test" || r == "hack" || strings.HasPrefix(r, "test/") || strings.HasPrefix(r, "hack/") {
			return "", false
		}
		return r, true
	}
	imports := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fields := strings.Fields(line)
		pkg, ok := rel(fields[0])
		if !ok {
			continue
		}
		imports[pkg] = []string{}
		for _, imp := range fields[1:] {
			if r, ok := rel(imp); ok {
				imports[pkg] = append(imports[pkg], r)
			}
		}
	}
	return module, imports
}

func TestPicture(t *testing.T) {
	page := "# x\n\n## Packages\n\n```\n# not a heading\n```\n\n```mermaid\nflowchart TD\n  a[\"cmd/a\"] --> b[\"internal/b\"]\n  %% a comment\n  a -->|\"uses | it\"| c[\"internal/c\"] --> b\n```\n\n## Next\n"
	pkgs, edges, err := Picture(page, "## Packages")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"cmd/a", "internal/b", "internal/c"}; !slices.Equal(pkgs, want) {
		t.Errorf("packages = %q, want %q", pkgs, want)
	}
	want := []Edge{{"cmd/a", "internal/b"}, {"cmd/a", "internal/c"}, {"internal/c", "internal/b"}}
	if !slices.Equal(edges, want) {
		t.Errorf("edges = %v, want %v", edges, want)
	}
}

func TestPictureErrors(t *testing.T) {
	for name, page := range map[string]string{
		"no section":        "# x\n",
		"no block":          "## Packages\n\ntext\n\n## Next\n\n```mermaid\na[\"x\"] --> b[\"y\"]\n```\n",
		"not closed":        "## Packages\n```mermaid\na[\"x\"] --> b[\"y\"]\n",
		"undeclared node":   "## Packages\n```mermaid\na[\"x\"] --> b\n```\n",
		"two paths, one id": "## Packages\n```mermaid\na[\"x\"] --> b[\"y\"]\na[\"z\"] --> b\n```\n",
		"unreadable line":   "## Packages\n```mermaid\na[\"x\"] ==> b[\"y\"]\n```\n",
		"no arrows":         "## Packages\n```mermaid\na[\"x\"]\n```\n",
	} {
		if _, _, err := Picture(page, "## Packages"); err == nil {
			t.Errorf("%s: Picture succeeded", name)
		}
	}
}
