package policy

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
)

func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestDecisionCacheKeepsNoInput validates requests that each carry a
// distinct 40 KiB annotation (about 12 MiB in all): the cache remembers
// their decisions within its 2 MiB budget, and keeps no input alive as a
// key.
func TestDecisionCacheKeepsNoInput(t *testing.T) {
	ctx := context.Background()
	b, err := LoadEmbedded(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const n, size, budget = 300, 40 << 10, 2 << 20
	b.SetDecisionCacheBytes(budget)
	before := liveHeap()
	for i := range n {
		r := cacheRequest()
		r.Object.Annotations["example.com/notes"] = fmt.Sprintf("%04d", i) + strings.Repeat("x", size)
		if _, err := b.Validate(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	grown := int64(liveHeap()) - int64(before)
	t.Logf("the cache holds %+v; the live heap grew by %.1f MiB for %d inputs of %d KiB", b.CacheStats(), float64(grown)/(1<<20), n, size>>10)
	if s := b.CacheStats(); s.Entries == 0 {
		t.Errorf("no decision was cached: %+v", s)
	}
	if s := b.CacheStats(); s.Bytes > budget {
		t.Errorf("the cache holds %d bytes, more than its budget of %d", s.Bytes, budget)
	}
	// The estimate of the cache's size must hold in the heap: 2 MiB and
	// little more, not the inputs.
	if grown > budget+budget/2 {
		t.Errorf("the live heap grew by %.1f MiB, more than the cache's budget of %d MiB and a half", float64(grown)/(1<<20), budget>>20)
	}
	runtime.KeepAlive(b)
}

// TestDecisionCacheSkipsLargeInputs: an input larger than the bound is
// evaluated every time and never remembered.
func TestDecisionCacheSkipsLargeInputs(t *testing.T) {
	ctx := context.Background()
	b, err := LoadEmbedded(ctx)
	if err != nil {
		t.Fatal(err)
	}
	r := cacheRequest()
	r.Object.Annotations["example.com/notes"] = strings.Repeat("x", MaxCachedInputBytes)
	x, err := b.Validate(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	y, err := b.Validate(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	if x == y {
		t.Errorf("a large input was answered from the cache")
	}
	if s := b.CacheStats(); s.Skipped != 2 || s.Entries != 0 || s.Hits != 0 {
		t.Errorf("cache stats %+v, want 2 skipped and nothing cached", s)
	}
	// Just under the bound, it is cached.
	r.Object.Annotations["example.com/notes"] = strings.Repeat("x", MaxCachedInputBytes/2)
	x, _ = b.Validate(ctx, r)
	y, _ = b.Validate(ctx, r)
	if x != y {
		t.Errorf("an input under the bound was not cached")
	}
}

// TestDecisionCacheIsBoundedInBytes fills a cache with values of known
// sizes: it never holds more than its byte budget, keeps the newest entries,
// and refuses a value too large for it.
func TestDecisionCacheIsBoundedInBytes(t *testing.T) {
	const budget = 64 << 10
	c := newDecisionCache(4096, budget, func(s string) int { return len(s) })
	for i := range 1000 {
		c.put(keyOf(fmt.Sprint(i)), strings.Repeat("v", 1000))
		if b := c.size(); b > budget {
			t.Fatalf("after %d inserts the cache holds %d bytes, more than its budget %d", i+1, b, budget)
		}
	}
	if _, ok := c.get(keyOf("999")); !ok {
		t.Errorf("the newest entry is not kept")
	}
	if _, ok := c.get(keyOf("0")); ok {
		t.Errorf("the oldest entry is kept after 1000 KB went into a 64 KiB cache")
	}
	c.put(keyOf("huge"), strings.Repeat("v", budget))
	if _, ok := c.get(keyOf("huge")); ok {
		t.Errorf("a value as large as the whole budget was cached")
	}
	if b := c.size(); b > budget {
		t.Errorf("the cache holds %d bytes, more than its budget %d", b, budget)
	}
	// A budget of 0 disables the cache.
	off := newDecisionCache(4096, 0, func(s string) int { return len(s) })
	off.put(keyOf("a"), "a")
	if _, ok := off.get(keyOf("a")); ok {
		t.Errorf("a cache of 0 bytes remembered an entry")
	}
}

// TestStoreDecisionCacheBytes: the byte budget set on a store applies to
// its bundle and shows in the stats.
func TestStoreDecisionCacheBytes(t *testing.T) {
	ctx := context.Background()
	s, err := NewStore(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	s.SetDecisionCacheBytes(0)
	b := s.Bundle()
	x, _ := b.Validate(ctx, cacheRequest())
	y, _ := b.Validate(ctx, cacheRequest())
	if x == y {
		t.Errorf("with a budget of 0 bytes a decision was cached")
	}
	s.SetDecisionCacheBytes(DefaultDecisionCacheBytes)
	x, _ = b.Validate(ctx, cacheRequest())
	y, _ = b.Validate(ctx, cacheRequest())
	if x != y {
		t.Errorf("with the default budget a decision was not cached")
	}
	if st := b.CacheStats(); st.Bytes <= 0 || st.Bytes > DefaultDecisionCacheBytes || st.Entries != 1 {
		t.Errorf("cache stats %+v, want 1 entry of a few hundred bytes", st)
	}
}
