package policy

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
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
	dir       string
	interval  time.Duration
	cacheSize int
	// cacheBytes is the byte budget of each bundle's decision caches.
	cacheBytes int
	evaluator string
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
}

// NewStore loads the embedded bundle, or the bundle in dir when dir is not
// empty, and fails when it does not compile.
func NewStore(ctx context.Context, dir string) (*Store, error) {
	var (
		b   *Bundle
		err error
	)
	if dir == "" {
		b, err = LoadEmbedded(ctx)
	} else {
		b, err = LoadDir(ctx, dir)
	}
	if err != nil {
		return nil, err
	}
	s := &Store{dir: dir, interval: 2 * time.Second, cacheSize: DefaultDecisionCacheSize, cacheBytes: DefaultDecisionCacheBytes}
	s.current.Store(b)
	return s, nil
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

// swap makes b the active bundle and wakes the Changed channels.
func (s *Store) swap(b *Bundle) {
	s.notify(func(st *Status) {
		s.current.Store(b)
		st.Reloads++
	})
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

// Watch polls the policy directory until ctx ends and swaps in a new bundle
// when the revision of its files changes; Changed and Status report both
// reloads and rejected changes. Polling, rather than inotify, also
// sees the atomic symlink swap of a mounted ConfigMap. It returns at once for a
// store without a directory. It satisfies controller-runtime's Runnable.
func (s *Store) Watch(ctx context.Context) error {
	if s.dir == "" {
		return nil
	}
	log := logr.FromContextOrDiscard(ctx).WithValues("policyDir", s.dir)
	failed := ""
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		rev, err := dirRevision(s.dir)
		if err != nil || rev == s.Bundle().Revision || rev == failed {
			if err != nil && failed != "unreadable" {
				log.Error(err, "cannot read the policy directory; the active policy keeps serving", "revision", s.Bundle().Revision)
				failed = "unreadable"
			}
			continue
		}
		b, err := LoadDir(ctx, s.dir)
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
		s.swap(b)
		log.Info("policy reloaded", "revision", b.Revision, "previousRevision", old, "evaluator", b.Evaluator)
	}
}
