package walkthrough

import (
	"slices"
	"strings"
	"testing"
)

const sample = "# x\n\n## Walkthrough\n\ntext\n\n```console\n$ kubectl get ns\nNAME   AGE\na      5s\n$ echo a \\\n    b\na b\n```\n\n```sh\nnot run\n```\n\n```console\n$ cat > f <<'EOF'\nline\nEOF\n$ kubectl create -f x\nError from server (Forbidden): no\n```\n\n## Next\n\n```console\n$ not part of it\n```\n"

func TestParse(t *testing.T) {
	steps, err := Parse(sample)
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
	for name, readme := range map[string]string{
		"no section":         "# x\n",
		"output first":       "## Walkthrough\n```console\nfoo\n```\n",
		"block never closed": "## Walkthrough\n```console\n$ ls\n",
	} {
		if _, err := Parse(readme); err == nil {
			t.Errorf("%s: Parse succeeded", name)
		}
	}
}

func TestRewrite(t *testing.T) {
	steps, err := Parse(sample)
	if err != nil {
		t.Fatal(err)
	}
	got := Rewrite(sample, steps, [][]string{{"NAME AGE", "b 1s"}, {"a b"}, {"created"}, nil})
	for _, s := range []string{"$ kubectl get ns\nNAME AGE\nb 1s\n$ echo", "EOF\ncreated\n$ kubectl create -f x\n```"} {
		if !strings.Contains(got, s) {
			t.Errorf("rewritten README lacks %q:\n%s", s, got)
		}
	}
	if again, _ := Parse(got); len(again) != len(steps) {
		t.Errorf("the rewritten README has %d steps, want %d", len(again), len(steps))
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
}
