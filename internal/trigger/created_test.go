package trigger

import (
	"testing"
	"time"
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
