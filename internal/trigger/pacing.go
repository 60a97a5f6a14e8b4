package trigger

import (
	"context"
	"sort"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

// Pacer bounds how fast the controller starts Workflows and how many of them
// run at once, so that a change across thousands of namespaces (a policy or
// WorkflowTemplate change) queues in nsprov instead of flooding Argo and the
// API server. Namespaces that wait are served in order: retries of failed
// runs first, then by when they started waiting.
type Pacer struct {
	// MaxRunning is how many nsprov Workflows may be unfinished at once; 0
	// is no bound.
	MaxRunning int
	// Limiter bounds the rate of new Workflows; nil is no bound.
	Limiter *rate.Limiter
	// Poll is the shortest time a waiting namespace is told to wait before
	// it asks again (default 2s).
	Poll time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time

	mu      sync.Mutex
	seq     uint64
	queue   map[string]*waiter   // namespace -> its place in the queue
	started map[string]time.Time // Workflows created, maybe not yet in the cache
}

// NewPacer returns a Pacer that lets at most maxRunning Workflows be
// unfinished at once and starts at most perSecond a second, in bursts of
// burst; 0 is no bound.
func NewPacer(maxRunning int, perSecond float64, burst int) *Pacer {
	p := &Pacer{MaxRunning: maxRunning}
	if perSecond > 0 {
		p.Limiter = rate.NewLimiter(rate.Limit(perSecond), burst)
	}
	return p
}

type waiter struct {
	failed  bool
	seq     uint64
	expires time.Time // forgotten after this, when the namespace stopped asking
}

// startedGrace is how long a Workflow this pacer created counts as running
// while the cache has not seen it yet.
const startedGrace = time.Minute

func (p *Pacer) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

func (p *Pacer) poll() time.Duration {
	if p.Poll > 0 {
		return p.Poll
	}
	return 2 * time.Second
}

// Start runs create for namespace ns when its turn has come: fewer than
// MaxRunning Workflows are unfinished, no namespace ahead of it in the queue
// waits, and the rate allows one more. running lists the names of the
// unfinished Workflows the cache knows; Start calls it while it decides,
// under its lock, so that no list taken before another reconcile started a
// Workflow is counted after the Pacer has seen that Workflow in a newer list
// (concurrent reconciles would otherwise start more than MaxRunning). create
// returns the name of the Workflow it created. When it is not ns's turn,
// Start returns how long to wait before asking again and ns stays queued;
// failed says that ns retries a failed run, which goes ahead of the others.
func (p *Pacer) Start(ns string, failed bool, running func() ([]string, error), create func() (string, error)) (time.Duration, error) {
	wait, w, err := p.turn(ns, failed, running)
	if wait > 0 || err != nil {
		return wait, err
	}
	// The turn is ns's and its slot reserved: create outside the lock, as
	// a create waits on the API server and holding the lock would let
	// only one Workflow start at a time.
	name, err := create()
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.started, reservation(ns))
	if err != nil {
		if _, again := p.queue[ns]; !again {
			p.queue[ns] = w // it keeps its place
		}
		return 0, err
	}
	if name != "" {
		p.started[name] = p.now()
	}
	return 0, nil
}

// reservation names the slot of a Workflow being created for ns in
// Pacer.started (no Workflow is named so).
func reservation(ns string) string { return "\x00" + ns }

// turn decides whether ns may start a Workflow now: if so, it takes ns out
// of the queue and reserves its slot (wait 0); if not, ns stays queued and
// wait says when to ask again.
func (p *Pacer) turn(ns string, failed bool, running func() ([]string, error)) (time.Duration, *waiter, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	if p.queue == nil {
		p.queue = map[string]*waiter{}
		p.started = map[string]time.Time{}
	}
	w, ok := p.queue[ns]
	if !ok {
		p.seq++
		w = &waiter{seq: p.seq}
		p.queue[ns] = w
	}
	w.failed = w.failed || failed
	for name, w := range p.queue {
		if !w.expires.IsZero() && now.After(w.expires) && name != ns {
			delete(p.queue, name)
		}
	}
	position := p.position(ns)
	if p.MaxRunning > 0 && position >= p.MaxRunning {
		// Not its turn whatever runs: no need to list.
		return p.wait(w, now, position, true), w, nil
	}
	free, err := p.free(now, running)
	if err != nil {
		return 0, w, err
	}
	if position >= free {
		return p.wait(w, now, position, true), w, nil
	}
	if p.Limiter != nil {
		r := p.Limiter.ReserveN(now, 1)
		if d := r.DelayFrom(now); d > 0 {
			r.CancelAt(now)
			return p.wait(w, now, position, false), w, nil
		}
	}
	delete(p.queue, ns)
	p.started[reservation(ns)] = now
	return 0, w, nil
}

// free is how many more Workflows may start under the bound (len(queue)
// when there is none): MaxRunning less the unfinished Workflows running
// lists and those this Pacer created that the list does not show yet. p.mu
// is held.
func (p *Pacer) free(now time.Time, running func() ([]string, error)) (int, error) {
	if p.MaxRunning <= 0 {
		return len(p.queue), nil
	}
	names, err := running()
	if err != nil {
		return 0, err
	}
	active := len(names)
	inCache := make(map[string]bool, len(names))
	for _, n := range names {
		inCache[n] = true
	}
	for name, at := range p.started {
		switch {
		case inCache[name] || now.Sub(at) > startedGrace:
			delete(p.started, name)
		default:
			active++
		}
	}
	return p.MaxRunning - active, nil
}

// Turn lists the queued namespaces whose turn has come: the first ones in
// queue order, as many as the bound has free slots (running lists the
// unfinished Workflows, as for Start). The controller reconciles them
// whenever one of its Workflows changes, so that a waiting namespace starts
// as soon as a Workflow finishes rather than when it next asks. Without a
// bound it lists none: the rate alone tells each namespace when to ask.
func (p *Pacer) Turn(running func() ([]string, error)) ([]string, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.MaxRunning <= 0 || len(p.queue) == 0 {
		return nil, nil
	}
	if p.started == nil {
		p.started = map[string]time.Time{}
	}
	free, err := p.free(p.now(), running)
	if err != nil || free <= 0 {
		return nil, err
	}
	order := p.ordered()
	if len(order) > free {
		order = order[:free]
	}
	return order, nil
}

// boundedPoll is how long a namespace held back by MaxRunning waits before
// it asks again, at least: the controller wakes the ones whose turn has come
// when a Workflow finishes (Turn), so thousands of waiting namespaces need
// not ask every Poll, each asking costing a policy evaluation.
const boundedPoll = 30 * time.Second

// wait is how long the namespace at position waits before asking again:
// Poll (boundedPoll when the bound holds it back), plus the time the rate
// takes to serve the namespaces ahead of it, so that thousands of waiting
// namespaces do not all ask every Poll.
func (p *Pacer) wait(w *waiter, now time.Time, position int, bounded bool) time.Duration {
	d := p.poll()
	if bounded {
		// The bound holds it back: the controller wakes it when a
		// Workflow finishes (Turn); asking again is only a fallback.
		d = boundedPoll
	}
	if p.Limiter != nil && p.Limiter.Limit() > 0 && p.Limiter.Limit() != rate.Inf {
		d += time.Duration(float64(position) / float64(p.Limiter.Limit()) * float64(time.Second))
	}
	if d > 5*time.Minute {
		d = 5 * time.Minute
	}
	w.expires = now.Add(2*d + 30*time.Second)
	return d
}

// position is how many queued namespaces go before ns.
func (p *Pacer) position(ns string) int {
	w, ok := p.queue[ns]
	if !ok {
		return len(p.queue)
	}
	n := 0
	for _, o := range p.queue {
		if before(o, w) {
			n++
		}
	}
	return n
}

// before tells whether a goes before b in the queue: retries of failed runs
// first, then by when they started waiting.
func before(a, b *waiter) bool {
	if a.failed != b.failed {
		return a.failed
	}
	return a.seq < b.seq
}

// ordered is the queued namespaces in queue order.
func (p *Pacer) ordered() []string {
	names := make([]string, 0, len(p.queue))
	for name := range p.queue {
		names = append(names, name)
	}
	sort.Slice(names, func(i, j int) bool { return before(p.queue[names[i]], p.queue[names[j]]) })
	return names
}

// Forget takes ns out of the queue: it no longer waits to start a Workflow.
func (p *Pacer) Forget(ns string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.queue, ns)
}

// Queued is how many namespaces wait for their turn.
func (p *Pacer) Queued() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.queue)
}

// wakeQueued maps a change of one of nsprov's Workflows (one that finished
// frees a slot) to the queued namespaces whose turn has come.
func (r *Reconciler) wakeQueued(ctx context.Context, _ client.Object) []reconcile.Request {
	names, err := r.Pacer.Turn(func() ([]string, error) { return r.running(ctx) })
	if err != nil {
		log.FromContext(ctx).Error(err, "finding the queued namespaces whose turn has come")
		return nil
	}
	reqs := make([]reconcile.Request, len(names))
	for i, n := range names {
		reqs[i] = reconcile.Request{NamespacedName: types.NamespacedName{Name: n}}
	}
	return reqs
}
