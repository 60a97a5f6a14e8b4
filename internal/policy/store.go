package policy

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"sync/atomic"
	"testing/fstest"
	"time"

	"github.com/go-logr/logr"

	"github.com/nsprov/nsprov/policies"
)

// Store holds the active bundle. Readers call Bundle on every request; it is a
// single atomic load. A Store that watches a directory replaces the bundle
// when the directory changes and the new files compile; a bundle that does not
// compile is reported and the previous one keeps serving.
//
// Changed and Status are the one way to hear about what the store does: every
// consumer (the controller, the background audit, the reload metrics and
// Events) takes Changed, reads Status, and waits for Changed to close.
type Store struct {
	current   atomic.Pointer[Bundle]
	mu        sync.Mutex
	changed   chan struct{} // closed and replaced when the status changes
	status    Status        // guarded by mu, except status.Bundle (current)
	files     Files         // of the active bundle when it came from files; guarded by mu
	loaded    string        // revision of the directory's files that are active ("" before any loaded); guarded by mu
	broken    string        // revision of the directory's files that did not load at start
	dir       string
	overlay   string
	interval  time.Duration
	cacheSize int
	// cacheBytes is the byte budget of each bundle's decision caches.
	cacheBytes int
	evaluator  string
}

// Status is what a store has done since it was created.
type Status struct {
	// Bundle is the active bundle.
	Bundle *Bundle
	// Reloads counts the bundles that replaced the active one.
	Reloads uint64
	// Rejections counts the changes of the directory whose bundle did not
	// load; the previous bundle kept serving.
	Rejections uint64
	// LastRejection is why the latest rejected change did not load.
	LastRejection error
	// LastGood is true while the active bundle is the last good one that
	// NewStoreWithLastGood was given because the directory's bundle did not
	// load at start; it is false again once the directory's bundle loads.
	LastGood bool
}

// Files are the files of a bundle by slash-separated path, as the loader
// reads them; a bundle loaded from them has the same revision as the
// directory they were read from.
type Files map[string][]byte

// FS returns the files as a file system for Load.
func (f Files) FS() fs.FS {
	m := make(fstest.MapFS, len(f))
	for p, data := range f {
		m[p] = &fstest.MapFile{Data: data, Mode: 0o444}
	}
	return m
}

// Revision is the revision of a bundle made of the files.
func (f Files) Revision() (string, error) { return revisionOf(f.FS()) }

// ReadFiles reads the files of the bundle in dir that the loader reads
// (following symbolic links, so a mounted ConfigMap reads as a plain copy),
// within the bundle size limits.
func ReadFiles(dir string) (Files, error) {
	files, err := readFS(os.DirFS(dir))
	if err != nil {
		return nil, fmt.Errorf("policy directory %s: %w", dir, err)
	}
	return files, nil
}

// readFS reads the files of the bundle in fsys that the loader reads, once
// bundleFiles has checked their number and size.
func readFS(fsys fs.FS) (Files, error) {
	paths, err := bundleFiles(fsys)
	if err != nil {
		return nil, err
	}
	files := make(Files, len(paths))
	for _, p := range paths {
		if files[p], err = fs.ReadFile(fsys, p); err != nil {
			return nil, err
		}
	}
	return files, nil
}

// readLayered reads the files of the bundle in dir (the embedded bundle's
// when dir is empty) with the files of overlayDir (when not empty) layered
// over them: a file of the overlay replaces the bundle's file of the same
// path, or is added. It returns a name for the result, for errors.
func readLayered(dir, overlayDir string) (Files, string, error) {
	isDir := func(what, d string) error {
		info, err := os.Stat(d)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if !info.IsDir() {
			return fmt.Errorf("%s %s is not a directory", what, d)
		}
		return nil
	}
	var (
		files  Files
		source = "embedded"
		err    error
	)
	if dir != "" {
		if err := isDir("policy directory", dir); err != nil {
			return nil, "", err
		}
		source = dir
		files, err = ReadFiles(dir)
	} else {
		files, err = embeddedFiles()
	}
	if err != nil {
		return nil, "", err
	}
	if overlayDir == "" {
		return files, source, nil
	}
	if err := isDir("policy overlay directory", overlayDir); err != nil {
		return nil, "", err
	}
	over, err := ReadFiles(overlayDir)
	if err != nil {
		return nil, "", err
	}
	for p, data := range over {
		files[p] = data
	}
	source += " with " + overlayDir + " layered over it"
	if _, err := bundleFiles(files.FS()); err != nil {
		return nil, "", fmt.Errorf("policy bundle %s: %w", source, err)
	}
	return files, source, nil
}

// embeddedFiles are the files of the embedded bundle.
func embeddedFiles() (Files, error) { return readFS(policies.Bundle) }

// loadFiles reads and compiles the bundle in dir with overlayDir layered over
// it (see readLayered), and returns it with its files; on error, rev is the
// revision of the files that did not load, or "" when they could not be
// read.
func loadFiles(ctx context.Context, dir, overlayDir string) (b *Bundle, files Files, rev string, err error) {
	files, source, err := readLayered(dir, overlayDir)
	if err != nil {
		return nil, nil, "", err
	}
	if rev, err = files.Revision(); err != nil {
		return nil, nil, "", fmt.Errorf("policy bundle %s: %w", source, err)
	}
	if b, err = loadLayeredFiles(ctx, files, source, dir, overlayDir); err != nil {
		return nil, nil, rev, err
	}
	return b, files, rev, nil
}

// loadLayeredFiles compiles the files readLayered read from dir and
// overlayDir.
func loadLayeredFiles(ctx context.Context, files Files, source, dir, overlayDir string) (*Bundle, error) {
	b, err := Load(ctx, files.FS(), source)
	if err != nil {
		return nil, err
	}
	// Errors name both directories; the bundle's source stays its own.
	b.Source, b.Overlay = "embedded", overlayDir
	if dir != "" {
		b.Source = dir
	}
	return b, nil
}

// LastGood is a bundle that loaded before, kept outside its directory (nsprov
// keeps it in the cluster), to serve when the directory's bundle does not
// load at start.
type LastGood struct {
	// Files are the bundle's files.
	Files Files
	// Revision is the revision the bundle had when it loaded; the files must
	// still have it.
	Revision string
	// Origin says where it was kept, for logs and Events.
	Origin string
}

// ErrNoLastGood is what a last-good lookup returns when no bundle was kept.
var ErrNoLastGood = errors.New("no last good bundle was saved")

// NewStoreWithLastGood loads the bundle in dir with overlayDir layered over
// it like NewLayeredStore. When it does not load, the store serves the
// bundle lastGood returns instead, with the failure recorded as a rejection
// (Status.LastGood is true), and Watch keeps trying the directory. Without a
// last good bundle (lastGood is nil or fails) it fails: it never falls back
// to the embedded bundle, which may be more permissive than the
// administrator's.
func NewStoreWithLastGood(ctx context.Context, dir, overlayDir string, lastGood func(context.Context) (*LastGood, error)) (*Store, error) {
	b, files, rev, err := loadFiles(ctx, dir, overlayDir)
	if err == nil {
		s := &Store{dir: dir, overlay: overlayDir, interval: 2 * time.Second, cacheSize: DefaultDecisionCacheSize, cacheBytes: DefaultDecisionCacheBytes, files: files, loaded: b.Revision}
		s.current.Store(b)
		return s, nil
	}
	if lastGood == nil || dir == "" {
		return nil, err
	}
	lg, lerr := lastGood(ctx)
	if lerr != nil {
		return nil, fmt.Errorf("%w; and there is no last good bundle to serve instead (%w): fix the policy", err, lerr)
	}
	good, lerr := Load(ctx, lg.Files.FS(), "last good bundle from "+lg.Origin)
	if lerr == nil && good.Revision != lg.Revision {
		lerr = fmt.Errorf("its files have revision %s, not the saved %s", good.Revision, lg.Revision)
	}
	if lerr != nil {
		return nil, fmt.Errorf("%w; and the last good bundle from %s does not load either (%w): fix the policy", err, lg.Origin, lerr)
	}
	s := &Store{dir: dir, overlay: overlayDir, interval: 2 * time.Second, cacheSize: DefaultDecisionCacheSize, cacheBytes: DefaultDecisionCacheBytes, files: lg.Files, broken: rev}
	if rev == "" {
		s.broken = "unreadable"
	}
	s.status = Status{Rejections: 1, LastRejection: err, LastGood: true}
	s.current.Store(good)
	return s, nil
}

// NewStore loads the embedded bundle, or the bundle in dir when dir is not
// empty, and fails when it does not compile.
func NewStore(ctx context.Context, dir string) (*Store, error) {
	return NewLayeredStore(ctx, dir, "")
}

// NewLayeredStore loads the bundle in dir (the embedded one when dir is
// empty) with the files of overlayDir (when not empty) layered over it, and
// fails when it does not compile. Watch follows both directories.
func NewLayeredStore(ctx context.Context, dir, overlayDir string) (*Store, error) {
	return NewStoreWithLastGood(ctx, dir, overlayDir, nil)
}

// StaticStore serves one bundle and never changes.
func StaticStore(b *Bundle) *Store {
	s := &Store{}
	s.current.Store(b)
	return s
}

// Bundle returns the active bundle.
func (s *Store) Bundle() *Bundle { return s.current.Load() }

// Changed returns a channel that is closed when the store's Status changes:
// a new bundle replaced the active one, or a changed directory was rejected.
// Take it before reading Status or Bundle, so no change is missed; several
// changes may close one channel.
func (s *Store) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.changed == nil {
		s.changed = make(chan struct{})
	}
	return s.changed
}

// Status returns what the store has done so far.
func (s *Store) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.status
	st.Bundle = s.Bundle()
	return st
}

// notify updates the status with f under the lock and wakes the Changed
// channels.
func (s *Store) notify(f func(*Status)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.status)
	if s.changed != nil {
		close(s.changed)
		s.changed = nil
	}
}

// swap makes b, made of files, the active bundle and wakes the Changed
// channels.
func (s *Store) swap(b *Bundle, files Files) {
	s.notify(func(st *Status) {
		s.current.Store(b)
		s.files = files
		s.loaded = b.Revision
		st.Reloads++
		st.LastGood = false
	})
}

// Files returns the files of the active bundle (with the overlay's), nil
// when its base is the embedded bundle or it is a StaticStore's. They must
// not be modified.
func (s *Store) Files() Files {
	if s.dir == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.files
}

// reject records a changed directory that did not load and wakes the
// Changed channels.
func (s *Store) reject(err error) {
	s.notify(func(st *Status) {
		st.Rejections++
		st.LastRejection = err
	})
}

// SetDecisionCacheSize sets the decision cache size of the active bundle and
// of every bundle loaded later (0 disables caching). Call it before serving.
func (s *Store) SetDecisionCacheSize(n int) {
	s.cacheSize = n
	s.Bundle().SetDecisionCacheSize(n)
}

// SetDecisionCacheBytes sets the byte budget of the decision caches of the
// active bundle and of every bundle loaded later (0 disables caching). Call
// it before serving.
func (s *Store) SetDecisionCacheBytes(n int) {
	s.cacheBytes = n
	s.Bundle().SetDecisionCacheBytes(n)
}

// SetEvaluator selects the evaluator of the active bundle and of every
// bundle loaded later (see Bundle.UseEvaluator). Call it before serving.
func (s *Store) SetEvaluator(name string) error {
	if err := s.Bundle().UseEvaluator(name); err != nil {
		return err
	}
	s.evaluator = name
	return nil
}

// SetInterval sets how often Watch looks at the directory (default 2s).
func (s *Store) SetInterval(d time.Duration) { s.interval = d }

// Watch polls the policy directory and the overlay directory until ctx ends
// and swaps in a new bundle when the revision of their files changes;
// Changed and Status report both reloads and rejected changes. Polling,
// rather than inotify, also sees the atomic symlink swap of a mounted
// ConfigMap. It returns at once for a store without a directory or overlay.
// It satisfies controller-runtime's Runnable.
func (s *Store) Watch(ctx context.Context) error {
	if s.dir == "" && s.overlay == "" {
		return nil
	}
	log := logr.FromContextOrDiscard(ctx).WithValues("policyDir", s.dir, "policyOverlayDir", s.overlay)
	failed := s.broken
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		files, source, err := readLayered(s.dir, s.overlay)
		var rev string
		if err == nil {
			rev, err = files.Revision()
		}
		s.mu.Lock()
		loaded := s.loaded
		s.mu.Unlock()
		if err != nil || rev == loaded || rev == failed {
			if err != nil && failed != "unreadable" {
				log.Error(err, "cannot read the policy directory; the active policy keeps serving", "revision", s.Bundle().Revision)
				failed = "unreadable"
			}
			continue
		}
		b, err := loadLayeredFiles(ctx, files, source, s.dir, s.overlay)
		if err != nil {
			failed = rev
			log.Error(err, "the changed policy does not load; the active policy keeps serving", "revision", s.Bundle().Revision, "rejectedRevision", rev)
			s.reject(err)
			continue
		}
		failed = ""
		b.cacheEntries, b.cacheBytes = s.cacheSize, s.cacheBytes
		b.newCaches()
		if s.evaluator != "" {
			if err := b.UseEvaluator(s.evaluator); err != nil {
				return err // SetEvaluator accepted the name, so this cannot happen
			}
		}
		old := s.Bundle().Revision
		s.swap(b, files)
		log.Info("policy reloaded", "revision", b.Revision, "previousRevision", old, "evaluator", b.Evaluator)
	}
}
