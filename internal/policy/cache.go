package policy

import (
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/open-policy-agent/opa/v1/ast"
	corev1 "k8s.io/api/core/v1"
)

// DefaultDecisionCacheSize is how many decisions of each kind (mutation,
// validation, plan) a bundle remembers by default.
const DefaultDecisionCacheSize = 4096

// decisionCache remembers results by the policy input they were computed
// from. The same input recurs often: a GitOps tool re-applying an unchanged
// Namespace, an API server retrying a call, the controller reconciling, a
// periodic audit. It is bounded with two generations: when the current one
// is full it becomes the previous one and the oldest is dropped, so lookups
// and inserts stay O(1) and at most 2*size entries are kept.
//
// Each bundle has caches of its own, so a policy reload starts empty. The
// cache relies on the policy being a function of its input and data, as
// admission policies must be; it keys on everything in the input except the
// request UID, which is unique to each request.
type decisionCache[V any] struct {
	size int

	mu        sync.Mutex
	cur, prev map[string]V

	hits, misses atomic.Uint64
}

func newDecisionCache[V any](size int) *decisionCache[V] {
	return &decisionCache[V]{size: size}
}

func (c *decisionCache[V]) get(key string) (V, bool) {
	var zero V
	if c.size <= 0 {
		return zero, false
	}
	c.mu.Lock()
	v, ok := c.cur[key]
	if !ok {
		if v, ok = c.prev[key]; ok {
			c.putLocked(key, v)
		}
	}
	c.mu.Unlock()
	if ok {
		c.hits.Add(1)
	} else {
		c.misses.Add(1)
	}
	return v, ok
}

func (c *decisionCache[V]) put(key string, v V) {
	if c.size <= 0 {
		return
	}
	c.mu.Lock()
	c.putLocked(key, v)
	c.mu.Unlock()
}

func (c *decisionCache[V]) putLocked(key string, v V) {
	if c.cur == nil {
		c.cur = make(map[string]V, c.size)
	}
	if len(c.cur) >= c.size {
		c.prev, c.cur = c.cur, make(map[string]V, c.size)
	}
	c.cur[key] = v
}

// cached answers req from c, or evaluates it and remembers the result. With
// the cache disabled it only evaluates: no key is built on that path.
func cached[V any](c *decisionCache[V], req *Request, eval func() (V, error)) (V, error) {
	if c.size <= 0 {
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

// CacheStats counts decision cache lookups.
type CacheStats struct {
	Hits, Misses uint64
}

// cacheKey identifies the policy input of a request: every field Value puts
// in the input except the request UID. Strings are length-prefixed and map
// keys sorted, so two different inputs never share a key.
func (r *Request) cacheKey() string {
	var sb strings.Builder
	sb.Grow(512)
	writeField(&sb, r.Operation)
	writeField(&sb, r.Username)
	writeInt(&sb, len(r.Groups))
	for _, g := range r.Groups {
		writeField(&sb, g)
	}
	if r.DryRun {
		sb.WriteByte('D')
	} else {
		sb.WriteByte('-')
	}
	writeNamespace(&sb, r.Object)
	writeNamespace(&sb, r.OldObject)
	return sb.String()
}

func writeNamespace(sb *strings.Builder, ns *corev1.Namespace) {
	if ns == nil {
		sb.WriteByte('0')
		return
	}
	sb.WriteByte('1')
	writeField(sb, ns.Name)
	writeField(sb, string(ns.UID))
	if ns.DeletionTimestamp != nil {
		writeInt(sb, int(ns.DeletionTimestamp.Unix()))
	} else {
		sb.WriteByte('-')
	}
	writeField(sb, string(ns.Status.Phase))
	writeMap(sb, ns.Labels)
	writeMap(sb, ns.Annotations)
}

func writeMap(sb *strings.Builder, m map[string]string) {
	var buf [16]string
	keys := buf[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	writeInt(sb, len(keys))
	for _, k := range keys {
		writeField(sb, k)
		writeField(sb, m[k])
	}
}

func writeField(sb *strings.Builder, s string) {
	writeInt(sb, len(s))
	sb.WriteString(s)
}

func writeInt(sb *strings.Builder, n int) {
	var buf [20]byte
	sb.Write(strconv.AppendInt(buf[:0], int64(n), 10))
	sb.WriteByte(':')
}

// Evaluation caches. OPA's evaluator remembers, during one query, the value
// of every rule it has evaluated (the virtual cache) and every base document
// it has read from the store (the base cache). Its default caches are tries
// allocated afresh for every query; on nsprov's short queries they account
// for a large share of the allocations. The caches below keep the same
// semantics with reusable memory.

// queryCache is the virtual cache of one query: a stack of frames, each
// mapping a rule's reference to its value or to undefined. It is reset and
// reused between queries.
type queryCache struct {
	frames []vcFrame
	depth  int
}

type vcFrame struct {
	index   map[int]int32 // ref hash -> 1 + position of the newest entry with that hash
	entries []vcEntry
	terms   []*ast.Term // backing store of the entries' refs
}

type vcEntry struct {
	ref       ast.Ref
	value     *ast.Term
	undefined bool
	next      int32 // 1 + position of the previous entry with the same hash, 0 for none
}

var queryCaches = sync.Pool{New: func() any { return &queryCache{} }}

// acquireQueryCache returns an empty virtual cache with one frame.
func acquireQueryCache() *queryCache {
	c := queryCaches.Get().(*queryCache)
	c.Push()
	return c
}

// release empties the cache and returns it to the pool.
func (c *queryCache) release() {
	for c.depth > 0 {
		c.Pop()
	}
	queryCaches.Put(c)
}

// Push implements topdown.VirtualCache.
func (c *queryCache) Push() {
	if c.depth == len(c.frames) {
		c.frames = append(c.frames, vcFrame{index: map[int]int32{}})
	}
	c.depth++
}

// Pop implements topdown.VirtualCache.
func (c *queryCache) Pop() {
	if c.depth == 0 {
		return
	}
	c.depth--
	f := &c.frames[c.depth]
	clear(f.index)
	clear(f.entries) // drop references to values so the pool keeps no garbage alive
	f.entries = f.entries[:0]
	clear(f.terms)
	f.terms = f.terms[:0]
}

func (c *queryCache) top() *vcFrame { return &c.frames[c.depth-1] }

func (f *vcFrame) find(ref ast.Ref, h int) *vcEntry {
	for i := f.index[h]; i > 0; i = f.entries[i-1].next {
		if e := &f.entries[i-1]; e.ref.Equal(ref) {
			return e
		}
	}
	return nil
}

// Get implements topdown.VirtualCache.
func (c *queryCache) Get(ref ast.Ref) (*ast.Term, bool) {
	e := c.top().find(ref, ref.Hash())
	if e == nil {
		return nil, false
	}
	if e.undefined {
		return nil, true
	}
	return e.value, false
}

// Put implements topdown.VirtualCache.
func (c *queryCache) Put(ref ast.Ref, value *ast.Term) {
	f := c.top()
	h := ref.Hash()
	if e := f.find(ref, h); e != nil {
		// As OPA's own cache: a value replaces the value, nil marks undefined.
		if value != nil {
			e.value = value
		} else {
			e.undefined = true
		}
		return
	}
	start := len(f.terms)
	f.terms = append(f.terms, ref...)
	f.entries = append(f.entries, vcEntry{
		ref:       f.terms[start:len(f.terms):len(f.terms)],
		value:     value,
		undefined: value == nil,
		next:      f.index[h],
	})
	f.index[h] = int32(len(f.entries))
}

// Keys implements topdown.VirtualCache.
func (c *queryCache) Keys() []ast.Ref {
	var keys []ast.Ref
	for _, e := range c.top().entries {
		if e.value != nil {
			keys = append(keys, e.ref.Copy())
		}
	}
	return keys
}

// dataCache is a bundle's base cache: the base documents (data) its queries
// have read from the store, shared by every query of the bundle. A bundle's
// store never changes after loading (a policy reload builds a new bundle), so
// a document read once stays valid for the bundle's lifetime and later
// queries read it without touching the store. Only documents that exist are
// cached, so its size is bounded by the bundle's data.
type dataCache struct {
	mu      sync.RWMutex
	entries map[int][]dataEntry
}

type dataEntry struct {
	ref   ast.Ref
	value ast.Value
}

// Get implements topdown.BaseCache: the value at ref, found at ref or inside
// a cached document that contains it, or nil.
func (c *dataCache) Get(ref ast.Ref) ast.Value {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if len(c.entries) == 0 {
		return nil
	}
	h := 0
	for i := range ref {
		h += ref[i].Value.Hash()
		for _, e := range c.entries[h] {
			if len(e.ref) != i+1 || !e.ref.Equal(ref[:i+1]) {
				continue
			}
			if i+1 == len(ref) {
				return e.value
			}
			v, err := e.value.Find(ref[i+1:])
			if err != nil {
				return nil
			}
			return v
		}
	}
	return nil
}

// Put implements topdown.BaseCache.
func (c *dataCache) Put(ref ast.Ref, value ast.Value) {
	h := ref.Hash()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.entries[h] {
		if e.ref.Equal(ref) {
			return
		}
	}
	if c.entries == nil {
		c.entries = map[int][]dataEntry{}
	}
	c.entries[h] = append(c.entries[h], dataEntry{ref: ref.Copy(), value: value})
}
