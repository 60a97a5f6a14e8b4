package policy

import (
	"crypto/sha256"
	"encoding/binary"
	"hash"
	"slices"
	"sync"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
)

// Defaults and bounds of the decision cache.
const (
	// DefaultDecisionCacheSize is how many decisions of each kind (mutation,
	// validation, plan) a bundle remembers at most by default.
	DefaultDecisionCacheSize = 4096
	// MaxCachedPlans bounds the plan cache further. Only the controller
	// (and `nsprov policy eval`) asks for plans: it reads a namespace's plan again when an event of its
	// Workflow follows nsprov's own write of the Namespace, so the plans
	// worth keeping are those of the namespaces whose Workflows run now,
	// which --max-running-workflows bounds (128 by default). A sweep over
	// every namespace (a policy change, a restart facing 10,000) reads each
	// plan once; keeping thousands of them (about 3 KiB each) would only
	// hold memory.
	MaxCachedPlans = 512
	// DefaultDecisionCacheBytes is the default memory budget of a bundle's
	// decision caches, shared equally by the three kinds.
	DefaultDecisionCacheBytes = 16 << 20
	// MaxCachedInputBytes is the largest input whose decision is remembered:
	// the length of every string of the input summed. Larger inputs (large
	// annotations) are rare and evaluated every time; they are counted as
	// skipped.
	MaxCachedInputBytes = 64 << 10
	// entryOverhead estimates the bytes an entry costs beyond its value: the
	// key, the map slot and the size kept beside the value.
	entryOverhead = 96
)

// cacheKey is a SHA-256 hash of a policy input: the cache keeps the hash,
// never the input.
type cacheKey [sha256.Size]byte

// decisionCache remembers results by the policy input they were computed
// from. The same input recurs often: a GitOps tool re-applying an unchanged
// Namespace, an API server retrying a call, the controller reconciling, a
// periodic audit. It is bounded in entries and in bytes with two
// generations: when the current one reaches half of either bound it becomes
// the previous one and the oldest is dropped, so lookups and inserts stay
// O(1) and at most the bounds are kept. A value larger than an eighth of
// the byte budget is not kept.
//
// Each bundle has caches of its own, so a policy reload starts empty. The
// cache relies on the policy being a function of its input and data, as
// admission policies must be; it keys on a hash of everything in the input
// except the request UID, which is unique to each request.
type decisionCache[V any] struct {
	entries, bytes int         // bounds; 0 disables the cache
	sizeOf         func(V) int // estimated bytes of a value

	mu        sync.Mutex
	cur, prev map[cacheKey]sized[V]
	// curBytes and prevBytes are the estimated bytes of each generation.
	curBytes, prevBytes int

	hits, misses, skipped atomic.Uint64
	held                  atomic.Int64 // bytes of both generations, for metrics
	count                 atomic.Int64 // entries of both generations
}

type sized[V any] struct {
	v    V
	size int
}

func newDecisionCache[V any](entries, bytes int, sizeOf func(V) int) *decisionCache[V] {
	if entries <= 0 || bytes <= 0 {
		entries, bytes = 0, 0
	}
	return &decisionCache[V]{entries: entries, bytes: bytes, sizeOf: sizeOf}
}

func (c *decisionCache[V]) enabled() bool { return c.entries > 0 }

func (c *decisionCache[V]) get(key cacheKey) (V, bool) {
	var zero V
	if !c.enabled() {
		return zero, false
	}
	c.mu.Lock()
	e, ok := c.cur[key]
	if !ok {
		if e, ok = c.prev[key]; ok {
			delete(c.prev, key)
			c.prevBytes -= e.size
			c.putLocked(key, e)
		}
	}
	c.mu.Unlock()
	if ok {
		c.hits.Add(1)
	} else {
		c.misses.Add(1)
	}
	return e.v, ok
}

func (c *decisionCache[V]) put(key cacheKey, v V) {
	if !c.enabled() {
		return
	}
	e := sized[V]{v: v, size: c.sizeOf(v) + entryOverhead}
	if e.size > c.bytes/8 {
		c.skipped.Add(1)
		return
	}
	c.mu.Lock()
	c.putLocked(key, e)
	c.mu.Unlock()
}

func (c *decisionCache[V]) putLocked(key cacheKey, e sized[V]) {
	if c.cur == nil {
		c.cur = make(map[cacheKey]sized[V])
	}
	if old, ok := c.cur[key]; ok {
		c.curBytes -= old.size
	} else if len(c.cur) >= (c.entries+1)/2 || c.curBytes+e.size > c.bytes/2 {
		c.prev, c.cur = c.cur, make(map[cacheKey]sized[V], len(c.cur))
		c.prevBytes, c.curBytes = c.curBytes, 0
	}
	c.cur[key] = e
	c.curBytes += e.size
	c.held.Store(int64(c.curBytes + c.prevBytes))
	c.count.Store(int64(len(c.cur) + len(c.prev)))
}

// size is the estimated bytes the cache holds.
func (c *decisionCache[V]) size() int { return int(c.held.Load()) }

// cached answers req from c, or evaluates it and remembers the result. With
// the cache disabled it only evaluates: no key is built on that path. An
// input larger than MaxCachedInputBytes is evaluated and not remembered.
func cached[V any](c *decisionCache[V], req *Request, eval func() (V, error)) (V, error) {
	if !c.enabled() {
		return eval()
	}
	if req.inputBytes() > MaxCachedInputBytes {
		c.skipped.Add(1)
		return eval()
	}
	key := req.cacheKey()
	if v, ok := c.get(key); ok {
		return v, nil
	}
	v, err := eval()
	if err == nil {
		c.put(key, v)
	}
	return v, err
}

// CacheStats describes a bundle's decision caches.
type CacheStats struct {
	// Hits and Misses count lookups; Skipped counts decisions not
	// remembered because their input or value was too large.
	Hits, Misses, Skipped uint64
	// Entries and Bytes are what the caches hold now (Bytes is an
	// estimate of the memory the entries take).
	Entries, Bytes int64
}

func (c *decisionCache[V]) stats() CacheStats {
	return CacheStats{
		Hits: c.hits.Load(), Misses: c.misses.Load(), Skipped: c.skipped.Load(),
		Entries: c.count.Load(), Bytes: c.held.Load(),
	}
}

func (s CacheStats) add(o CacheStats) CacheStats {
	return CacheStats{
		Hits: s.Hits + o.Hits, Misses: s.Misses + o.Misses, Skipped: s.Skipped + o.Skipped,
		Entries: s.Entries + o.Entries, Bytes: s.Bytes + o.Bytes,
	}
}

// Value sizes, estimated from their strings and a fixed cost per element.

func validationSize(v *Validation) int {
	n := 64
	for _, x := range v.Violations {
		n += 32 + len(x.Rule) + len(x.Message)
	}
	for _, w := range v.Warnings {
		n += 16 + len(w)
	}
	return n
}

func mutationSize(m *Mutation) int {
	n := 64
	for _, mp := range []map[string]*string{m.Annotations, m.Labels} {
		for k, v := range mp {
			n += 48 + len(k)
			if v != nil {
				n += len(*v)
			}
		}
	}
	return n
}

func planSize(p map[string]any) int { return anySize(p) }

func anySize(v any) int {
	switch x := v.(type) {
	case string:
		return 16 + len(x)
	case map[string]any:
		n := 48
		for k, e := range x {
			n += 16 + len(k) + anySize(e)
		}
		return n
	case []any:
		n := 24
		for _, e := range x {
			n += anySize(e)
		}
		return n
	default:
		return 16
	}
}

// inputBytes is the length of every string of the policy input summed.
func (r *Request) inputBytes() int {
	n := len(r.Operation) + len(r.Username)
	for _, g := range r.Groups {
		n += len(g)
	}
	return n + namespaceBytes(r.Object) + namespaceBytes(r.OldObject)
}

func namespaceBytes(ns *corev1.Namespace) int {
	if ns == nil {
		return 0
	}
	n := len(ns.Name) + len(ns.UID) + len(ns.Status.Phase)
	for _, m := range []map[string]string{ns.Labels, ns.Annotations} {
		for k, v := range m {
			n += len(k) + len(v)
		}
	}
	return n
}

// keyWriter hashes the fields of an input.
type keyWriter struct {
	h   hash.Hash
	buf [binary.MaxVarintLen64]byte
}

var keyWriters = sync.Pool{New: func() any { return &keyWriter{h: sha256.New()} }}

// cacheKey identifies the policy input of a request: a hash of every field
// value puts in the input except the request UID. Strings are
// length-prefixed and map keys sorted, so two different inputs never hash
// the same stream.
func (r *Request) cacheKey() cacheKey {
	w := keyWriters.Get().(*keyWriter)
	w.h.Reset()
	w.field(r.Operation)
	w.field(r.Username)
	w.int(int64(len(r.Groups)))
	for _, g := range r.Groups {
		w.field(g)
	}
	if r.DryRun {
		w.int(1)
	} else {
		w.int(0)
	}
	w.namespace(r.Object)
	w.namespace(r.OldObject)
	var k cacheKey
	w.h.Sum(k[:0])
	keyWriters.Put(w)
	return k
}

func (w *keyWriter) namespace(ns *corev1.Namespace) {
	if ns == nil {
		w.int(0)
		return
	}
	w.int(1)
	w.field(ns.Name)
	w.field(string(ns.UID))
	if ns.DeletionTimestamp != nil {
		w.int(1)
		w.int(ns.DeletionTimestamp.Unix())
	} else {
		w.int(0)
	}
	w.field(string(ns.Status.Phase))
	w.stringMap(ns.Labels)
	w.stringMap(ns.Annotations)
}

func (w *keyWriter) stringMap(m map[string]string) {
	var buf [16]string
	keys := buf[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	w.int(int64(len(keys)))
	for _, k := range keys {
		w.field(k)
		w.field(m[k])
	}
}

func (w *keyWriter) field(s string) {
	w.int(int64(len(s)))
	_, _ = w.h.Write([]byte(s)) // hash.Hash.Write never fails
}

func (w *keyWriter) int(n int64) {
	_, _ = w.h.Write(binary.AppendVarint(w.buf[:0], n))
}
