package testutil

import (
	"io/fs"
	"testing"
	"testing/fstest"

	"github.com/nsprov/nsprov/policies"
)

// CopyFS copies every file of fsys into a MapFS that a test can edit
// without changing fsys. It fails the test when fsys has no files.
func CopyFS(tb testing.TB, fsys fs.FS) fstest.MapFS {
	tb.Helper()
	files := fstest.MapFS{}
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		files[p] = &fstest.MapFile{Data: data, Mode: 0o644}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	if len(files) == 0 {
		tb.Fatal("the file system to copy is empty")
	}
	return files
}

// CloneFS copies a MapFS so that tests can change the copy independently.
func CloneFS(m fstest.MapFS) fstest.MapFS {
	out := fstest.MapFS{}
	for k, v := range m {
		c := *v
		c.Data = append([]byte(nil), v.Data...)
		out[k] = &c
	}
	return out
}

// EmbeddedPolicies is an editable copy of the policy bundle built into the
// binary (policies.Bundle).
func EmbeddedPolicies(tb testing.TB) fstest.MapFS {
	tb.Helper()
	return CopyFS(tb, policies.Bundle)
}

// PoliciesDir writes the embedded policy bundle into a new temporary
// directory, writable, as `nsprov policy export` does, and returns it.
func PoliciesDir(tb testing.TB) string {
	tb.Helper()
	dir := tb.TempDir()
	if err := policies.Export(dir); err != nil {
		tb.Fatal(err)
	}
	return dir
}
