package policy

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nsprov/nsprov/internal/testutil"
	"github.com/nsprov/nsprov/policies"
)

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	eventuallyWithin(t, 10*time.Second, what, cond)
}

func eventuallyWithin(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// writeAtomic replaces a file in one rename, so that the watcher never sees
// it half written. The temporary file is hidden, which the loader ignores.
func writeAtomic(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// watched is a Store whose Watch runs until the test ends, with a consumer
// that follows Changed and Status as the store's real consumers do and keeps
// every bundle it saw become active and every rejection.
type watched struct {
	*Store
	mu      sync.Mutex
	changes []*Bundle
	errs    []error
}

func (w *watched) changed() []*Bundle {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]*Bundle(nil), w.changes...)
}

func (w *watched) errors() []error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]error(nil), w.errs...)
}

// follow records the store's changes until ctx ends.
func (w *watched) follow(ctx context.Context) {
	var seen Status
	for first := true; ; first = false {
		changed := w.Changed()
		st := w.Status()
		w.mu.Lock()
		if first || st.Bundle != seen.Bundle {
			w.changes = append(w.changes, st.Bundle)
		}
		if st.Rejections != seen.Rejections {
			w.errs = append(w.errs, st.LastRejection)
		}
		w.mu.Unlock()
		seen = st
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
	}
}

func startWatch(t *testing.T, dir string) *watched {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s, err := NewStore(ctx, dir)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	s.SetInterval(100 * time.Millisecond)
	w := &watched{Store: s}
	done := make(chan error, 1)
	followed := make(chan struct{})
	go func() { defer close(followed); w.follow(ctx) }()
	go func() { done <- s.Watch(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Watch returned %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Watch did not return after its context ended")
		}
		<-followed
	})
	return w
}

// smallTierCost evaluates the warning that quotes the small tier's cost.
func smallTierCost(t *testing.T, b *Bundle) string {
	t.Helper()
	v, err := b.Validate(context.Background(), &Request{
		Operation: "CREATE", Username: "alice", Groups: []string{"team-payments"},
		Object: testutil.Namespace("payments-dev", map[string]string{"nsprov.io/team": "payments", "nsprov.io/environment": "development"}, nil),
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range v.Warnings {
		if strings.HasPrefix(w, "tier small costs ") {
			return w
		}
	}
	t.Fatalf("no tier cost warning in %q", v.Warnings)
	return ""
}

func TestStoreWatch(t *testing.T) {
	dir := testutil.PoliciesDir(t)
	w := startWatch(t, dir)
	first := w.Bundle()
	eventually(t, "the consumer seeing the first bundle", func() bool { return len(w.changed()) >= 1 })
	if got := w.changed()[0]; got != first {
		t.Fatalf("the consumer first saw revision %s, want the loaded bundle %s", got.Revision, first.Revision)
	}
	if st := w.Status(); st.Bundle != first || st.Reloads != 0 || st.Rejections != 0 || st.LastRejection != nil {
		t.Fatalf("status before any change %+v", st)
	}
	if c := smallTierCost(t, first); !strings.Contains(c, "$100 per month") {
		t.Fatalf("initial warning %q", c)
	}

	// A valid edit of a data file is swapped in.
	tiers := filepath.Join(dir, "config", "tiers.yaml")
	orig := readFile(t, tiers)
	writeAtomic(t, tiers, strings.Replace(orig, "monthly_cost_usd: 100", "monthly_cost_usd: 150", 1))
	r1, err := dirRevision(dir)
	if err != nil {
		t.Fatal(err)
	}
	if r1 == first.Revision {
		t.Fatal("the edit did not change the revision")
	}
	eventually(t, "the edited bundle", func() bool { return w.Bundle().Revision == r1 })
	eventually(t, "the consumer seeing the edited bundle", func() bool {
		ch := w.changed()
		return ch[len(ch)-1].Revision == r1
	})
	edited := w.Bundle()
	if c := smallTierCost(t, edited); !strings.Contains(c, "$150 per month") {
		t.Errorf("after the edit the warning says %q", c)
	}
	if edited.Source != dir {
		t.Errorf("source %q, want %q", edited.Source, dir)
	}
	if errs := w.errors(); len(errs) != 0 {
		t.Fatalf("a valid edit was reported as rejected: %v", errs)
	}

	// A broken edit keeps the edited bundle serving and is reported as a
	// rejection.
	lib := filepath.Join(dir, "lib.rego")
	libOrig := readFile(t, lib)
	writeAtomic(t, lib, libOrig+"\nbroken := {\n")
	eventually(t, "the consumer seeing the rejected edit", func() bool { return len(w.errors()) >= 1 })
	if err := w.errors()[0]; !strings.Contains(err.Error(), "lib.rego") {
		t.Errorf("rejection %v, want it to name lib.rego", err)
	}
	if w.Bundle() != edited {
		t.Errorf("the broken edit replaced the bundle: revision %s, want %s", w.Bundle().Revision, r1)
	}
	if ch := w.changed(); ch[len(ch)-1] != edited {
		t.Errorf("the broken edit was reported as a new bundle with revision %s", ch[len(ch)-1].Revision)
	}
	if c := smallTierCost(t, w.Bundle()); !strings.Contains(c, "$150 per month") {
		t.Errorf("the serving bundle changed behaviour: %q", c)
	}

	// Fixing it swaps again.
	writeAtomic(t, lib, libOrig+"\n# fixed\n")
	r2, err := dirRevision(dir)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the fixed bundle", func() bool { return w.Bundle().Revision == r2 })
	eventually(t, "the consumer seeing the fixed bundle", func() bool {
		ch := w.changed()
		return ch[len(ch)-1].Revision == r2
	})
	if c := smallTierCost(t, w.Bundle()); !strings.Contains(c, "$150 per month") {
		t.Errorf("after the fix the warning says %q", c)
	}
	// Every bundle made active was reported once, in order.
	var revs []string
	for _, b := range w.changed() {
		revs = append(revs, b.Revision)
	}
	if want := []string{first.Revision, r1, r2}; strings.Join(revs, ",") != strings.Join(want, ",") {
		t.Errorf("bundles seen %v, want %v", revs, want)
	}
	if st := w.Status(); st.Reloads != 2 || st.Rejections != 1 || st.LastRejection == nil || st.Bundle.Revision != r2 {
		t.Errorf("status %+v, want 2 reloads, 1 rejection and revision %s", st, r2)
	}
	if errs := w.errors(); len(errs) != 1 {
		t.Errorf("rejections seen %v, want the broken edit once", errs)
	}
}

// A directory mounted from a ConfigMap holds the files in a hidden
// timestamped directory; ..data links to it, and every top-level entry
// (files, and a directory such as config/ when the volume's items use paths)
// links through ..data. An update writes a new timestamped directory and swaps
// ..data in one rename.
func configMapMount(t *testing.T) (mount, current string) {
	t.Helper()
	mount = t.TempDir()
	current = filepath.Join(mount, "..2026_01_01_00_00_00.000000001")
	if err := os.Rename(testutil.PoliciesDir(t), current); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Base(current), filepath.Join(mount, "..data")); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(current)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if err := os.Symlink(filepath.Join("..data", e.Name()), filepath.Join(mount, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
	return mount, current
}

// swapConfigMap does what the kubelet does on a ConfigMap update: a new
// directory with the edited files, then ..data swapped in one rename.
func swapConfigMap(t *testing.T, mount, current string, edit func(dir string)) {
	t.Helper()
	next := filepath.Join(mount, "..2026_01_01_00_00_01.000000002")
	if err := os.CopyFS(next, os.DirFS(current)); err != nil {
		t.Fatal(err)
	}
	edit(next)
	tmp := filepath.Join(mount, "..data_tmp")
	if err := os.Symlink(filepath.Base(next), tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(mount, "..data")); err != nil {
		t.Fatal(err)
	}
}

// The revision of a ConfigMap mount covers the same files as the loader: a
// mounted copy of policies/ has the revision of the embedded bundle.
func TestRevisionConfigMapMount(t *testing.T) {
	mount, _ := configMapMount(t)
	b, err := LoadDir(context.Background(), mount)
	if err != nil {
		t.Fatal(err)
	}
	emb, err := LoadEmbedded(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// The loader follows the config symlink: the data is there.
	if c := smallTierCost(t, b); !strings.Contains(c, "$100 per month") {
		t.Fatalf("mounted bundle says %q", c)
	}
	if b.Revision != emb.Revision {
		t.Errorf("the mounted copy of policies/ has revision %s, the embedded bundle %s: files the loader reads are missing from the revision", b.Revision, emb.Revision)
	}
}

func TestStoreWatchConfigMapSwap(t *testing.T) {
	tests := []struct {
		name     string
		edit     func(t *testing.T, dir string)
		wantCost string
	}{
		{"rego file", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "lib.rego")
			writeAtomic(t, p, readFile(t, p)+"\n# edited\n")
		}, "$100 per month"},
		{"data file in config", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "config", "tiers.yaml")
			writeAtomic(t, p, strings.Replace(readFile(t, p), "monthly_cost_usd: 100", "monthly_cost_usd: 150", 1))
		}, "$150 per month"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mount, current := configMapMount(t)
			w := startWatch(t, mount)
			first := w.Bundle()
			swapConfigMap(t, mount, current, func(dir string) { tt.edit(t, dir) })
			// 5s is 50 polls.
			eventuallyWithin(t, 5*time.Second, "the swapped bundle", func() bool { return w.Bundle().Revision != first.Revision })
			if c := smallTierCost(t, w.Bundle()); !strings.Contains(c, tt.wantCost) {
				t.Errorf("the swapped bundle says %q, want %s", c, tt.wantCost)
			}
			if errs := w.errors(); len(errs) != 0 {
				t.Errorf("rejected: %v", errs)
			}
		})
	}
}

func TestStoreWithoutDirectory(t *testing.T) {
	ctx := context.Background()
	s, err := NewStore(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if s.Bundle() == nil || s.Bundle().Source != "embedded" {
		t.Fatalf("bundle %+v", s.Bundle())
	}
	changed := s.Changed()
	// Watch returns at once: nothing to watch, nothing changes.
	if err := s.Watch(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
		t.Error("Changed is closed though nothing changed")
	default:
	}
	if st := s.Status(); st.Bundle != s.Bundle() || st.Reloads != 0 || st.Rejections != 0 {
		t.Errorf("status %+v, want the embedded bundle and nothing else", st)
	}

	static := StaticStore(s.Bundle())
	if static.Bundle() != s.Bundle() {
		t.Error("StaticStore does not serve its bundle")
	}
	if err := static.Watch(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestNewStoreErrors(t *testing.T) {
	ctx := context.Background()
	broken := testutil.PoliciesDir(t)
	lib := filepath.Join(broken, "lib.rego")
	writeAtomic(t, lib, readFile(t, lib)+"\nbroken := {\n")
	tests := []struct {
		name, dir string
		want      string
	}{
		{"missing directory", filepath.Join(t.TempDir(), "missing"), "no such file or directory"},
		{"broken policy", broken, "lib.rego"},
		{"empty directory", t.TempDir(), "has no .rego modules"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewStore(ctx, tt.dir)
			if err == nil {
				t.Fatalf("NewStore succeeded with revision %s", s.Bundle().Revision)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestStoreEvaluator(t *testing.T) {
	for _, evaluator := range []string{EvaluatorCompiled, EvaluatorTopdown} {
		t.Run(evaluator, func(t *testing.T) {
			dir := testutil.PoliciesDir(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			s, err := NewStore(ctx, dir)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.SetEvaluator("wasm"); err == nil || !strings.Contains(err.Error(), `"wasm" is not known`) {
				t.Fatalf("SetEvaluator(wasm): %v", err)
			}
			if err := s.SetEvaluator(evaluator); err != nil {
				t.Fatal(err)
			}
			want := evaluator == EvaluatorCompiled
			if b := s.Bundle(); b.Evaluator != evaluator || b.Compiled() != want {
				t.Fatalf("loaded bundle: evaluator %q, compiled %v", b.Evaluator, b.Compiled())
			}
			s.SetInterval(100 * time.Millisecond)
			done := make(chan error, 1)
			go func() { done <- s.Watch(ctx) }()
			tiers := filepath.Join(dir, "config", "tiers.yaml")
			writeAtomic(t, tiers, strings.Replace(readFile(t, tiers), "monthly_cost_usd: 100", "monthly_cost_usd: 175", 1))
			eventually(t, "the edited bundle", func() bool { return strings.Contains(smallTierCost(t, s.Bundle()), "$175") })
			if b := s.Bundle(); b.Evaluator != evaluator || b.Compiled() != want {
				t.Errorf("reloaded bundle: evaluator %q, compiled %v", b.Evaluator, b.Compiled())
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestStoreChanged(t *testing.T) {
	dir := testutil.PoliciesDir(t)
	w := startWatch(t, dir)
	changed := w.Changed()
	select {
	case <-changed:
		t.Fatal("Changed is closed before any change")
	case <-time.After(300 * time.Millisecond):
	}
	tiers := filepath.Join(dir, "config", "tiers.yaml")
	writeAtomic(t, tiers, strings.Replace(readFile(t, tiers), "monthly_cost_usd: 100", "monthly_cost_usd: 125", 1))
	select {
	case <-changed:
	case <-time.After(10 * time.Second):
		t.Fatal("Changed was not closed when the edited bundle was swapped in")
	}
	if c := smallTierCost(t, w.Bundle()); !strings.Contains(c, "$125") {
		t.Errorf("after Changed the bundle says %q", c)
	}
	next := w.Changed()
	select {
	case <-next:
		t.Fatal("the next Changed is closed without a new change")
	default:
	}
	// A rejected edit closes it too, and leaves the bundle in place.
	before := w.Bundle()
	lib := filepath.Join(dir, "lib.rego")
	writeAtomic(t, lib, readFile(t, lib)+"\nbroken := {\n")
	select {
	case <-next:
	case <-time.After(10 * time.Second):
		t.Fatal("Changed was not closed when the broken edit was rejected")
	}
	if st := w.Status(); st.Bundle != before || st.Rejections != 1 || st.LastRejection == nil {
		t.Errorf("status after the rejected edit %+v", st)
	}
}

// NewStoreWithLastGood serves the directory's bundle when it loads, the last
// good one (as a rejection, LastGood) when it does not, and fails without a
// last good bundle or with one whose files do not have its revision; once
// the directory loads, it replaces the last good one.
func TestStoreWithLastGood(t *testing.T) {
	ctx := context.Background()
	good := t.TempDir()
	if err := policies.Export(good); err != nil {
		t.Fatal(err)
	}
	goodFiles, err := ReadFiles(good)
	if err != nil {
		t.Fatal(err)
	}
	goodRev, err := goodFiles.Revision()
	if err != nil {
		t.Fatal(err)
	}
	if rev, err := dirRevision(good); err != nil || rev != goodRev {
		t.Fatalf("the files' revision %s differs from the directory's %s (%v)", goodRev, rev, err)
	}
	broken := t.TempDir()
	if err := policies.Export(broken); err != nil {
		t.Fatal(err)
	}
	writeAtomic(t, filepath.Join(broken, "broken.rego"), "package nsprov.validation\n\ndeny contains v if {\n")
	saved := &LastGood{Files: goodFiles, Revision: goodRev, Origin: "test"}
	tampered := Files{}
	for p, data := range goodFiles {
		tampered[p] = data
	}
	tampered["config/tiers.yaml"] = append([]byte("# edited\n"), tampered["config/tiers.yaml"]...)

	tests := []struct {
		name         string
		dir          string
		lastGood     func(context.Context) (*LastGood, error)
		wantErr      []string
		wantLastGood bool
	}{
		{"directory loads", good, func(context.Context) (*LastGood, error) {
			t.Error("last good read although the directory loads")
			return nil, nil
		}, nil, false},
		{"broken, last good", broken, func(context.Context) (*LastGood, error) { return saved, nil }, nil, true},
		{"broken, none saved", broken, func(context.Context) (*LastGood, error) { return nil, ErrNoLastGood }, []string{"broken.rego", "no last good bundle"}, false},
		{"broken, no lookup", broken, nil, []string{"broken.rego"}, false},
		{"broken, tampered last good", broken, func(context.Context) (*LastGood, error) {
			return &LastGood{Files: tampered, Revision: goodRev, Origin: "test"}, nil
		}, []string{"broken.rego", "not the saved " + goodRev}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := NewStoreWithLastGood(ctx, tt.dir, "", tt.lastGood)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("store serving %s, want an error", s.Bundle().Source)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q lacks %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			st := s.Status()
			if st.LastGood != tt.wantLastGood || st.Bundle.Revision != goodRev {
				t.Errorf("LastGood %v, revision %s; want %v, %s", st.LastGood, st.Bundle.Revision, tt.wantLastGood, goodRev)
			}
			if tt.wantLastGood && (st.Rejections != 1 || st.LastRejection == nil || !strings.Contains(st.LastRejection.Error(), "broken.rego")) {
				t.Errorf("status %+v, want one rejection naming broken.rego", st)
			}
			if rev, _ := s.Files().Revision(); rev != goodRev {
				t.Errorf("Files have revision %s, want %s", rev, goodRev)
			}
		})
	}

	// Watching: the broken directory is not rejected again, the fixed one
	// replaces the last good bundle.
	s, err := NewStoreWithLastGood(ctx, broken, "", func(context.Context) (*LastGood, error) { return saved, nil })
	if err != nil {
		t.Fatal(err)
	}
	s.SetInterval(50 * time.Millisecond)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = s.Watch(wctx) }()
	if err := os.Remove(filepath.Join(broken, "broken.rego")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the fixed directory loading", func() bool { return !s.Status().LastGood })
	st := s.Status()
	if st.Rejections != 1 || st.Reloads != 1 || st.Bundle.Source != broken {
		t.Errorf("status %+v, want 1 rejection (at start), 1 reload, the bundle of %s", st, broken)
	}
}
