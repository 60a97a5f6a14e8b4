package walkthrough

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nsprov/nsprov/test/envtest"
)

const sample = "# x\n\n## Walkthrough\n\ntext\n\n```console\n$ kubectl get ns\nNAME   AGE\na      5s\n$ echo a \\\n    b\na b\n```\n\n```sh\n# not a heading, not run\n$ not run\n```\n\n### A subsection\n\n```console\n$ cat > f <<'EOF'\nline\nEOF\n$ kubectl create -f x\nError from server (Forbidden): no\n```\n\n## Next\n\n```console\n$ not part of it\n```\n"

func TestParse(t *testing.T) {
	steps, err := Parse(sample, "## Walkthrough")
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		cmd string
		out []string
	}{
		{"kubectl get ns", []string{"NAME   AGE", "a      5s"}},
		{"echo a \\\n    b", []string{"a b"}},
		{"cat > f <<'EOF'\nline\nEOF", nil},
		{"kubectl create -f x", []string{"Error from server (Forbidden): no"}},
	}
	if len(steps) != len(want) {
		t.Fatalf("%d steps, want %d: %+v", len(steps), len(want), steps)
	}
	for i, w := range want {
		if steps[i].Command != w.cmd || !slices.Equal(steps[i].Output, w.out) {
			t.Errorf("step %d = %q %q, want %q %q", i, steps[i].Command, steps[i].Output, w.cmd, w.out)
		}
	}
	if steps[0].Line != 8 {
		t.Errorf("first command on line %d, want 8", steps[0].Line)
	}
}

func TestParseErrors(t *testing.T) {
	for name, tc := range map[string]struct{ page, section string }{
		"no section":         {"# x\n", "## Walkthrough"},
		"not a heading":      {"Walkthrough\n```console\n$ ls\n```\n", "Walkthrough"},
		"output first":       {"## Walkthrough\n```console\nfoo\n```\n", "## Walkthrough"},
		"block never closed": {"## Walkthrough\n```console\n$ ls\n", "## Walkthrough"},
	} {
		if _, err := Parse(tc.page, tc.section); err == nil {
			t.Errorf("%s: Parse succeeded", name)
		}
	}
}

func TestRewrite(t *testing.T) {
	steps, err := Parse(sample, "## Walkthrough")
	if err != nil {
		t.Fatal(err)
	}
	got := Rewrite(sample, steps, [][]string{{"NAME AGE", "b 1s"}, {"a b"}, {"created"}, nil})
	for _, s := range []string{"$ kubectl get ns\nNAME AGE\nb 1s\n$ echo", "EOF\ncreated\n$ kubectl create -f x\n```"} {
		if !strings.Contains(got, s) {
			t.Errorf("rewritten README lacks %q:\n%s", s, got)
		}
	}
	if again, _ := Parse(got, "## Walkthrough"); len(again) != len(steps) {
		t.Errorf("the rewritten README has %d steps, want %d", len(again), len(steps))
	}
}

// TestParseSectionEnds checks where a section ends: at the next heading of
// its level or a higher one, not at a deeper heading.
func TestParseSectionEnds(t *testing.T) {
	page := "# Page\n\n## Part: one\n\n```console\n$ one\n```\n\n### deeper\n\n```console\n$ two\n```\n\n## Part: two\n\n```console\n$ three\n```\n\n# Top\n\n```console\n$ four\n```\n"
	for section, want := range map[string][]string{
		"## Part: one": {"one", "two"},
		"### deeper":   {"two"},
		"## Part: two": {"three"},
		"# Top":        {"four"},
		"# Page":       {"one", "two", "three"},
	} {
		steps, err := Parse(page, section)
		if err != nil {
			t.Fatalf("%s: %v", section, err)
		}
		var got []string
		for _, s := range steps {
			got = append(got, s.Command)
		}
		if !slices.Equal(got, want) {
			t.Errorf("Parse(%q) = %q, want %q", section, got, want)
		}
	}
}

func TestNormalize(t *testing.T) {
	got := Normalize([]string{
		"resourcequota/nsprov-quota      12s",
		"limitrange/x   2026-11-26T06:21:34Z",
		"argo/nsprov-f155b362aae4-18863faddc",
		"cpu 2Gi 100m",
		"",
	})
	want := []string{
		"resourcequota/nsprov-quota <age>",
		"limitrange/x <time>",
		"argo/nsprov-<uid>-18863faddc",
		"cpu 2Gi <age>",
	}
	if !slices.Equal(got, want) {
		t.Errorf("Normalize = %q, want %q", got, want)
	}

	// Steps that started in the same second or two come in either order:
	// the rows of a steps table compare as a set, the lines around them in
	// order.
	table := func(first, second string) []string {
		return []string{
			"Steps:",
			"  STEP          STATE  DURATION  ATTEMPTS  MESSAGE",
			"  " + first + "  done   4s        1",
			"  " + second + "  done   9s        1",
			"",
			"Workflow: argo/x",
		}
	}
	a, b := Normalize(table("quota", "rbac")), Normalize(table("rbac", "quota"))
	if !slices.Equal(a, b) {
		t.Errorf("steps tables in another order normalize differently:\n%q\n%q", a, b)
	}
	if a[0] != "Steps:" || a[len(a)-1] != "Workflow: argo/x" || a[2] != "quota done <age> 1" {
		t.Errorf("Normalize of a steps table = %q", a)
	}
	if c := Normalize([]string{"rbac", "quota"}); !slices.Equal(c, []string{"rbac", "quota"}) {
		t.Errorf("lines outside a steps table were reordered: %q", c)
	}
}

// TestPartsAreFound checks, without a control plane, that every part of the
// walkthrough is where Parts says, whole, and that the examples are used.
func TestPartsAreFound(t *testing.T) {
	root, err := envtest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	var all []Step
	for _, part := range Parts {
		data, err := os.ReadFile(filepath.Join(root, filepath.FromSlash(part.File)))
		if err != nil {
			t.Fatal(err)
		}
		steps, err := Parse(string(data), part.Section)
		if err != nil {
			t.Fatalf("%s: %v", part.File, err)
		}
		if len(steps) < part.MinSteps {
			t.Errorf("%s: the section %q has %d commands, want at least %d", part.File, part.Section, len(steps), part.MinSteps)
		}
		all = append(all, steps...)
	}
	checkExamplesAreUsed(t, root, all)
}
