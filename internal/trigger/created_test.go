package trigger

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// A Workflow this replica created is taken to exist for createdGrace, or
// until the cache has it.
func TestCreatedRecently(t *testing.T) {
	t0 := time.Unix(1000, 0)
	for _, tc := range []struct {
		name string
		do   func(c *createdRecently)
		at   time.Time
		want time.Duration
	}{
		{name: "never created", do: func(*createdRecently) {}, at: t0, want: 0},
		{name: "just created", do: func(c *createdRecently) { c.add("wf", t0) }, at: t0.Add(10 * time.Second), want: createdGrace - 10*time.Second},
		{name: "grace over", do: func(c *createdRecently) { c.add("wf", t0) }, at: t0.Add(createdGrace + time.Second), want: 0},
		{name: "seen in the cache", do: func(c *createdRecently) { c.add("wf", t0); c.seen("wf") }, at: t0, want: 0},
		{name: "forgotten once its grace is over", do: func(c *createdRecently) {
			c.add("wf", t0)
			c.add("other", t0.Add(createdGrace+time.Second))
		}, at: t0, want: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c createdRecently
			tc.do(&c)
			if got := c.wait("wf", tc.at); got != tc.want {
				t.Errorf("wait = %s, want %s", got, tc.want)
			}
		})
	}
}

// A cached Namespace that this replica has written over is stale until the
// cache shows a later version.
func TestStaleAfterWrite(t *testing.T) {
	ns := func(rv string) *corev1.Namespace {
		return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "a", ResourceVersion: rv}}
	}
	var r Reconciler
	if r.stale(ns("1")) {
		t.Fatal("stale before any write")
	}
	r.written.Store("a", "1") // wrote over version 1
	if !r.stale(ns("1")) {
		t.Error("version 1, written over, not stale")
	}
	if r.stale(ns("2")) {
		t.Error("version 2, the write's, stale")
	}
	if r.stale(ns("1")) {
		t.Error("stale again once the cache showed a later version")
	}
}
