package trigger

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// clock is a settable time for the Pacer.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func TestPacerBoundsRunningWorkflows(t *testing.T) {
	c := &clock{t: time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC)}
	p := &Pacer{MaxRunning: 3, Now: c.now}
	var running []string
	start := func(ns string, failed bool) (time.Duration, bool) {
		t.Helper()
		started := false
		wait, err := p.Start(ns, failed, func() ([]string, error) { return running, nil }, func() (string, error) {
			started = true
			return "wf-" + ns, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if started == (wait > 0) {
			t.Fatalf("%s: started %v with wait %s", ns, started, wait)
		}
		return wait, started
	}
	// Three start; the cache has not seen them yet, they count all the same.
	for _, ns := range []string{"a", "b", "c"} {
		if _, ok := start(ns, false); !ok {
			t.Fatalf("%s did not start below the bound", ns)
		}
	}
	if _, ok := start("d", false); ok {
		t.Fatal("d started beyond the bound of 3")
	}
	if _, ok := start("e", false); ok {
		t.Fatal("e started beyond the bound of 3")
	}
	if p.Queued() != 2 {
		t.Errorf("queued %d, want 2", p.Queued())
	}
	// The cache sees them: still 3.
	running = []string{"wf-a", "wf-b", "wf-c"}
	if _, ok := start("d", false); ok {
		t.Fatal("d started with 3 running")
	}
	// a finishes: one slot, and it is d's, who waited first, not e's.
	running = []string{"wf-b", "wf-c"}
	if _, ok := start("e", false); ok {
		t.Fatal("e took the slot d waited for first")
	}
	if _, ok := start("d", false); !ok {
		t.Fatal("d did not get the free slot")
	}
	if _, ok := start("e", false); ok {
		t.Fatal("e started beyond the bound (d's new Workflow counts before the cache sees it)")
	}
	// A retry of a failed run goes before e.
	running = []string{"wf-c", "wf-d"}
	if _, ok := start("f", true); !ok {
		t.Fatal("the failed namespace f did not go first")
	}
	if p.Queued() != 1 {
		t.Errorf("queued %d, want 1 (e)", p.Queued())
	}
	// e goes away: it no longer waits.
	p.Forget("e")
	if p.Queued() != 0 {
		t.Errorf("queued %d after Forget, want 0", p.Queued())
	}
}

func TestPacerFailedFirst(t *testing.T) {
	p := &Pacer{MaxRunning: 1}
	full := []string{"busy"}
	for _, ns := range []string{"a", "b"} {
		if _, err := p.Start(ns, false, list(full...), func() (string, error) { return "", errors.New("must not start") }); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.Start("retry", true, list(full...), func() (string, error) { return "", errors.New("must not start") }); err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, ns := range []string{"a", "b", "retry"} {
		if _, err := p.Start(ns, false, list(), func() (string, error) { order = append(order, ns); return ns, nil }); err != nil {
			t.Fatal(err)
		}
	}
	if fmt.Sprint(order) != "[retry]" {
		t.Errorf("with one slot started %v, want the failed namespace [retry]", order)
	}
}

func TestPacerRate(t *testing.T) {
	c := &clock{t: time.Date(2026, 11, 29, 0, 0, 0, 0, time.UTC)}
	p := &Pacer{Limiter: rate.NewLimiter(2, 2), Now: c.now, Poll: time.Second}
	started := 0
	create := func() (string, error) { started++; return fmt.Sprint("wf", started), nil }
	for i := range 5 {
		if _, err := p.Start(fmt.Sprint("ns", i), false, list(), create); err != nil {
			t.Fatal(err)
		}
	}
	if started != 2 {
		t.Fatalf("%d started at once, want the burst of 2", started)
	}
	// Waiting namespaces are told to come back later the further back they are.
	w3, _ := p.Start("ns3", false, list(), create)
	w4, _ := p.Start("ns4", false, list(), create)
	if w3 < time.Second || w4 <= w3 {
		t.Errorf("waits %s and %s, want at least Poll and growing with the position", w3, w4)
	}
	c.t = c.t.Add(time.Second) // two more tokens
	for _, ns := range []string{"ns2", "ns3", "ns4"} {
		if _, err := p.Start(ns, false, list(), create); err != nil {
			t.Fatal(err)
		}
	}
	if started != 4 {
		t.Errorf("%d started after a second at 2/s, want 4", started)
	}
}

func TestPacerCreateError(t *testing.T) {
	p := &Pacer{MaxRunning: 1}
	if _, err := p.Start("a", false, list(), func() (string, error) { return "", errors.New("boom") }); err == nil {
		t.Fatal("the create error was lost")
	}
	if _, err := p.Start("a", false, list(), func() (string, error) { return "wf", nil }); err != nil {
		t.Fatal(err)
	}
}

func TestBackoff(t *testing.T) {
	tests := []struct {
		attempt int
		want    time.Duration
	}{{1, 2 * time.Second}, {2, 4 * time.Second}, {3, 8 * time.Second}, {6, time.Minute}, {60, time.Minute}}
	for _, tt := range tests {
		if got := Backoff(tt.attempt, 2*time.Second, time.Minute); got != tt.want {
			t.Errorf("Backoff(%d) = %s, want %s", tt.attempt, got, tt.want)
		}
	}
}

// TestPacerReadsRunningWhenItDecides: reconciles run concurrently. A list
// of the running Workflows taken before another reconcile started one, and
// handed in after a third reconcile's list showed that Workflow (which ends
// its count as "started, not yet cached"), let a Workflow start beyond the
// bound. The Pacer now reads the list itself while it decides, under its
// lock: the list it counts is never older than one it has already seen.
func TestPacerReadsRunningWhenItDecides(t *testing.T) {
	p := &Pacer{MaxRunning: 1}
	var cache []string // what the informer holds
	lists := 0
	running := func() ([]string, error) { lists++; return cache, nil }
	if _, err := p.Start("b", false, running, func() (string, error) { return "wf-b", nil }); err != nil {
		t.Fatal(err)
	}
	cache = []string{"wf-b"} // the cache sees b's Workflow
	if _, err := p.Start("c", false, running, func() (string, error) {
		t.Fatal("c started beyond the bound of 1")
		return "", nil
	}); err != nil {
		t.Fatal(err)
	}
	p.Forget("c")
	// a's reconcile began while nothing ran; it lists no earlier than now.
	if _, err := p.Start("a", false, running, func() (string, error) {
		t.Error("a started beyond the bound of 1")
		return "wf-a", nil
	}); err != nil {
		t.Fatal(err)
	}
	if lists != 3 {
		t.Errorf("running listed %d times, want once per Start", lists)
	}
	p.Forget("a")
	// Far back in the queue: not listed at all (nothing frees enough slots).
	for _, ns := range []string{"d", "e", "f"} {
		if _, err := p.Start(ns, false, running, func() (string, error) { return "", errors.New("must not start") }); err != nil {
			t.Fatal(err)
		}
	}
	if lists != 4 {
		t.Errorf("running listed %d times, want 4: d, first in the queue, lists; e and f, beyond the bound, do not", lists)
	}
	// An error listing is Start's error.
	if _, err := p.Start("d", false, func() ([]string, error) { return nil, errors.New("cache down") }, func() (string, error) { return "wf-d", nil }); err == nil {
		t.Error("the list error was lost")
	}
}

// list is a running function that returns names.
func list(names ...string) func() ([]string, error) {
	return func() ([]string, error) { return names, nil }
}

func TestPacerTurn(t *testing.T) {
	p := &Pacer{MaxRunning: 2}
	full := list("wf-x", "wf-y")
	for _, ns := range []string{"a", "b", "c"} {
		if _, err := p.Start(ns, false, full, func() (string, error) { return "", errors.New("must not start") }); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := p.Start("retry", true, full, func() (string, error) { return "", errors.New("must not start") }); err != nil {
		t.Fatal(err)
	}
	// Held back by the bound, a namespace asks again only as a fallback:
	// Turn wakes it.
	if wait, _ := p.Start("a", false, full, func() (string, error) { return "", errors.New("must not start") }); wait < boundedPoll {
		t.Errorf("held back by the bound: asks again after %s, want at least %s", wait, boundedPoll)
	}
	tests := []struct {
		running []string
		want    string
	}{
		{[]string{"wf-x", "wf-y"}, "[]"},         // no slot free
		{[]string{"wf-y"}, "[retry]"},            // one: the failed run first
		{nil, "[retry a]"},                       // two
		{[]string{"wf-x", "wf-y", "wf-z"}, "[]"}, // over the bound
	}
	for _, tt := range tests {
		got, err := p.Turn(list(tt.running...))
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != tt.want {
			t.Errorf("with %v running: turn of %v, want %s", tt.running, got, tt.want)
		}
	}
	if got, _ := (&Pacer{}).Turn(list()); len(got) != 0 {
		t.Errorf("without a bound: turn of %v, want none (the rate tells each when to ask)", got)
	}
	if _, err := p.Turn(func() ([]string, error) { return nil, errors.New("cache down") }); err == nil {
		t.Error("the list error was lost")
	}
}

// TestPacerCreatesOutsideTheLock: a create waits on the API server; other
// namespaces are decided meanwhile, the slot being created counting as
// running.
func TestPacerCreatesOutsideTheLock(t *testing.T) {
	p := &Pacer{MaxRunning: 2}
	inCreate, release := make(chan struct{}), make(chan struct{})
	done := make(chan error)
	go func() {
		_, err := p.Start("a", false, list(), func() (string, error) {
			close(inCreate)
			<-release
			return "", errors.New("the API server refused it")
		})
		done <- err
	}()
	<-inCreate
	// a's create is under way: b starts in the other slot, c finds none.
	started := false
	if _, err := p.Start("b", false, list(), func() (string, error) { started = true; return "wf-b", nil }); err != nil {
		t.Fatal(err)
	}
	if !started {
		t.Fatal("b did not start while a's create was under way")
	}
	if wait, err := p.Start("c", false, list(), func() (string, error) { return "", errors.New("must not start") }); err != nil || wait == 0 {
		t.Fatalf("c started (wait %s, %v) with a's slot reserved and b's taken", wait, err)
	}
	close(release)
	if err := <-done; err == nil {
		t.Fatal("a's create error was lost")
	}
	// a failed: its slot is free again and a keeps its place before c.
	if got, _ := p.Turn(list("wf-b")); fmt.Sprint(got) != "[a]" {
		t.Errorf("after a's failed create: turn of %v, want [a]", got)
	}
}
