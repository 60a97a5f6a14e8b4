package policy

import (
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

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

// cacheKey identifies the policy input of a request: every field value puts
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
