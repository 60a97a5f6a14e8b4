package gendocs

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// pages are the documentation pages whose links TestLinksResolve checks.
var pages = []string{"README.md", "docs/*.md", "charts/nsprov/README.md"}

var (
	mdLink  = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	heading = regexp.MustCompile("^#{1,6} (.+)$")
)

// TestLinksResolve checks that every relative link of the documentation
// points to a file that exists and, with a #fragment into a markdown page, to
// a heading of that page, so that moving text between pages breaks no link.
func TestLinksResolve(t *testing.T) {
	var files []string
	for _, p := range pages {
		m, err := filepath.Glob(filepath.Join(repoRoot, filepath.FromSlash(p)))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) < 5 {
		t.Fatalf("found only %d pages", len(files))
	}
	anchors := map[string]map[string]bool{}
	anchorsOf := func(path string) map[string]bool {
		if a, ok := anchors[path]; ok {
			return a
		}
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		a := map[string]bool{}
		for _, l := range outsideCode(string(data)) {
			if m := heading.FindStringSubmatch(l); m != nil {
				a[anchor(strings.ReplaceAll(m[1], "`", ""))] = true
			}
		}
		anchors[path] = a
		return a
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(repoRoot, f)
		for _, l := range outsideCode(string(data)) {
			for _, m := range mdLink.FindAllStringSubmatch(l, -1) {
				target := m[1]
				if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
					continue
				}
				file, frag, _ := strings.Cut(target, "#")
				path := f
				if file != "" {
					path = filepath.Join(filepath.Dir(f), filepath.FromSlash(file))
					if _, err := os.Stat(path); err != nil {
						t.Errorf("%s: the link %s points to a file that does not exist", rel, target)
						continue
					}
				}
				if frag != "" && strings.HasSuffix(path, ".md") && !anchorsOf(path)[frag] {
					t.Errorf("%s: the link %s points to no heading of %s", rel, target, filepath.Base(path))
				}
			}
		}
	}
}

// outsideCode returns the lines of a markdown page that are not inside
// fenced code blocks.
func outsideCode(page string) []string {
	var out []string
	in := false
	for _, l := range strings.Split(page, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "```") {
			in = !in
			continue
		}
		if !in {
			out = append(out, l)
		}
	}
	return out
}
