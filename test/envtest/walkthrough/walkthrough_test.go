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

// updateEnv, when set to 1, rewrites the documented outputs with the outputs
// of this run (review the diff before committing it). `make docs` sets it for
// the generated pages too; the walkthrough needs a control plane, so it is
// refreshed by running this test with it.
const updateEnv = "NSPROV_UPDATE_DOCS"

// Parts is the walkthrough, in the order it runs: README's walkthrough, then
// its continuations in the pages on auditing, provisioning and policies. Each
// part relies on the state the earlier ones leave (the audit counts bob's two
// denials before the live rule adds a third). When a part moves, change this
// list.
var Parts = []Part{
	{File: "README.md", Section: "## Walkthrough", MinSteps: 10},
	{File: "docs/auditing.md", Section: "## Walkthrough: denials are on record", MinSteps: 4},
	{File: "docs/provisioning.md", Section: "## Walkthrough: a tier change re-provisions", MinSteps: 2},
	{File: "docs/policies.md", Section: "## Walkthrough: change a rule live", MinSteps: 4},
}

// page is one page of the walkthrough: its text and the steps of each of its
// parts, in the order they run.
type page struct {
	path  string
	text  string
	parts [][]Step
}

// TestReadmeWalkthrough runs every command of the walkthrough (README's and
// the parts in docs/ that continue it), in order, against the dev environment
// `make dev` runs, and compares each output with the one the page shows.
func TestReadmeWalkthrough(t *testing.T) {
	root, err := envtest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	pages := map[string]*page{}
	var all []Step
	type located struct {
		page *page
		part int
		step int
	}
	var where []located
	for _, part := range Parts {
		pg := pages[part.File]
		if pg == nil {
			path := filepath.Join(root, filepath.FromSlash(part.File))
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			pg = &page{path: path, text: string(data)}
			pages[part.File] = pg
		}
		steps, err := Parse(pg.text, part.Section)
		if err != nil {
			t.Fatalf("%s: %v", part.File, err)
		}
		if len(steps) < part.MinSteps {
			t.Fatalf("%s: the section %q has %d commands, want at least %d; it was not found whole", part.File, part.Section, len(steps), part.MinSteps)
		}
		for i := range steps {
			where = append(where, located{page: pg, part: len(pg.parts), step: i})
		}
		pg.parts = append(pg.parts, steps)
		all = append(all, steps...)
	}
	checkExamplesAreUsed(t, root, all)

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
	outputs := map[*page][][][]string{}
	for _, pg := range pages {
		outputs[pg] = make([][][]string, len(pg.parts))
		for i, steps := range pg.parts {
			outputs[pg][i] = make([][]string, len(steps))
		}
	}
	for i, s := range all {
		at := where[i]
		file, _ := filepath.Rel(root, at.page.path)
		if skipped(s.Command) {
			outputs[at.page][at.part][at.step] = s.Output
			continue
		}
		got, failed := run(ctx, t, root, environ, s.Command)
		outputs[at.page][at.part][at.step] = got
		if update {
			continue
		}
		wantFail := slices.ContainsFunc(s.Output, func(l string) bool { return strings.HasPrefix(l, "Error from server") })
		if failed != wantFail {
			t.Errorf("%s line %d: `%s` failed=%v, want failed=%v; output:\n%s", file, s.Line, s.Command, failed, wantFail, strings.Join(got, "\n"))
		}
		if want, have := Normalize(s.Output), Normalize(got); !slices.Equal(want, have) {
			t.Errorf("%s line %d: `%s` printed:\n%s\nthe page shows:\n%s\n(run with %s=1 to rewrite the page)", file, s.Line, s.Command,
				strings.Join(got, "\n"), strings.Join(s.Output, "\n"), updateEnv)
		}
	}
	if update {
		for _, pg := range pages {
			// Rewrite the parts from the last to the first, so that the line
			// numbers of the earlier ones still hold.
			text := pg.text
			for i := len(pg.parts) - 1; i >= 0; i-- {
				text = Rewrite(text, pg.parts[i], outputs[pg][i])
			}
			if err := os.WriteFile(pg.path, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			t.Logf("rewrote the outputs of the walkthrough in %s", pg.path)
		}
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

// buildNsprov builds the nsprov binary the walkthrough calls, and links it
// as kubectl-nsprov.
func buildNsprov(t *testing.T, root string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "nsprov")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/webhook")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building nsprov: %v\n%s", err, out)
	}
	// As make build does: the same binary is kubectl's plugin under this name.
	if err := os.Symlink("nsprov", filepath.Join(filepath.Dir(bin), "kubectl-nsprov")); err != nil {
		t.Fatal(err)
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
			t.Errorf("%s is not used by the walkthrough; add a step that applies it and shows the outcome", name)
		}
	}
}
