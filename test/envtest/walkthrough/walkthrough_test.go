package walkthrough

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nsprov/nsprov/policies"
	"github.com/nsprov/nsprov/test/envtest"
	"github.com/nsprov/nsprov/test/envtest/devenv"
)

// updateEnv, when set to 1, rewrites the README's documented outputs with the
// outputs of this run (review the diff before committing it).
const updateEnv = "NSPROV_UPDATE_README"

// TestReadmeWalkthrough runs every command of the README's walkthrough, in
// order, against the dev environment `make dev` runs, and compares each
// output with the one the README shows.
func TestReadmeWalkthrough(t *testing.T) {
	root, err := envtest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	readmePath := filepath.Join(root, "README.md")
	data, err := os.ReadFile(readmePath)
	if err != nil {
		t.Fatal(err)
	}
	readme := string(data)
	steps, err := Parse(readme)
	if err != nil {
		t.Fatal(err)
	}
	if len(steps) < 10 {
		t.Fatalf("the walkthrough has %d commands; the README section %q was not found whole", len(steps), Section)
	}
	checkExamplesAreUsed(t, root, steps)

	// The walkthrough ends with a live policy edit, so the environment serves
	// an exported copy of the embedded policies, as `make dev POLICY_DIR=...`.
	policyDir := filepath.Join(t.TempDir(), "policies")
	if err := policies.Export(policyDir); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	env, err := devenv.Start(ctx, devenv.Options{StateDir: t.TempDir(), PolicyDir: policyDir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stopping the dev environment: %v", err)
		}
	})
	assets, err := envtest.AssetsDir()
	if err != nil {
		t.Fatal(err)
	}
	nsprovBin := buildNsprov(t, root)
	environ := append(os.Environ(),
		"KUBECONFIG="+env.Kubeconfig,
		"POLICY_DIR="+policyDir,
		"PATH="+assets+string(os.PathListSeparator)+filepath.Dir(nsprovBin)+string(os.PathListSeparator)+os.Getenv("PATH"),
	)

	update := os.Getenv(updateEnv) == "1"
	outputs := make([][]string, len(steps))
	for i, s := range steps {
		if skipped(s.Command) {
			outputs[i] = s.Output
			continue
		}
		got, failed := run(ctx, t, root, environ, s.Command)
		outputs[i] = got
		if update {
			continue
		}
		wantFail := slices.ContainsFunc(s.Output, func(l string) bool { return strings.HasPrefix(l, "Error from server") })
		if failed != wantFail {
			t.Errorf("README line %d: `%s` failed=%v, want failed=%v; output:\n%s", s.Line, s.Command, failed, wantFail, strings.Join(got, "\n"))
		}
		if want, have := Normalize(s.Output), Normalize(got); !slices.Equal(want, have) {
			t.Errorf("README line %d: `%s` printed:\n%s\nthe README shows:\n%s\n(run with %s=1 to rewrite the README)", s.Line, s.Command,
				strings.Join(got, "\n"), strings.Join(s.Output, "\n"), updateEnv)
		}
	}
	if update {
		if err := os.WriteFile(readmePath, []byte(Rewrite(readme, steps, outputs)), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("rewrote the outputs of %d commands in %s", len(steps), readmePath)
	}
}

// skipped are the commands the environment itself stands for: starting it
// and pointing the shell at it.
func skipped(cmd string) bool {
	return strings.HasPrefix(cmd, "make ") || strings.HasPrefix(cmd, "export ")
}

// run runs one command with bash in the repository root and returns its
// combined output, in the order it was written, and whether it failed.
func run(ctx context.Context, t *testing.T, dir string, environ []string, command string) ([]string, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-o", "pipefail", "-c", command)
	cmd.Dir = dir
	cmd.Env = environ
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("`%s` did not finish in 3 minutes; output:\n%s", command, out.String())
	}
	text := strings.TrimRight(out.String(), "\n")
	if text == "" {
		return nil, err != nil
	}
	return strings.Split(text, "\n"), err != nil
}

// buildNsprov builds the nsprov binary the walkthrough calls.
func buildNsprov(t *testing.T, root string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "nsprov")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/webhook")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building nsprov: %v\n%s", err, out)
	}
	return bin
}

// checkExamplesAreUsed fails when a manifest in examples/ is not applied by
// the walkthrough, so that every example's documented outcome is checked.
func checkExamplesAreUsed(t *testing.T, root string, steps []Step) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root, "examples", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("examples/ has no manifests")
	}
	for _, f := range files {
		name := "examples/" + filepath.Base(f)
		if !slices.ContainsFunc(steps, func(s Step) bool { return strings.Contains(s.Command, name) }) {
			t.Errorf("%s is not used by the README walkthrough; add a step that applies it and shows the outcome", name)
		}
	}
}
