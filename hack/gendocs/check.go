package gendocs

import (
	"os"
	"strings"
	"testing"
)

// CheckGenerated compares a generated page with the file at path, or writes
// it when NSPROV_UPDATE_DOCS=1. A difference fails the test with the first
// differing line and how to regenerate the page.
func CheckGenerated(t testing.TB, path, want string) {
	t.Helper()
	if os.Getenv(UpdateEnv) == "1" {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", path)
		return
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v; %s", err, RegenerateHint)
	}
	if got := string(data); got != want {
		gotLines, wantLines := strings.Split(got, "\n"), strings.Split(want, "\n")
		i := 0
		for i < len(gotLines) && i < len(wantLines) && gotLines[i] == wantLines[i] {
			i++
		}
		line := func(l []string) string {
			if i < len(l) {
				return l[i]
			}
			return "(end of file)"
		}
		t.Errorf("%s is stale: line %d is\n  %s\nbut the generator writes\n  %s\n%s", path, i+1, line(gotLines), line(wantLines), RegenerateHint)
	}
}
