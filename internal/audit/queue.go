package audit

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Reasons of nsprov_audit_records_dropped_total.
const (
	// DropQueueFull: the queue of unwritten results was full and its oldest
	// entries made room for new ones.
	DropQueueFull = "queue-full"
	// DropReportBound: the result was trimmed from the report (or never
	// entered it) because the report keeps only the newest ReportSize results.
	DropReportBound = "report-bound"
	// DropTooLarge: the API server refused a report holding the result
	// alone as too large, so it can never be written.
	DropTooLarge = "too-large"
)

// Metrics of the queue of denial results.
var (
	droppedTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "nsprov_audit_records_dropped_total",
		Help: "Denial results (one per violated rule) that are not kept in the nsprov-admission-denials ClusterReport, by reason: queue-full (the write queue overflowed), report-bound (trimmed to keep the newest --audit-report-size results) or too-large (the API server refused a report holding that result alone).",
	}, []string{"reason"})
	queueLength = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "nsprov_audit_queue_length",
		Help: "Denial results waiting to be written into the ClusterReport, including a batch being written.",
	})
)

// denial is one violated rule of one denied request: a future result of the
// nsprov-admission-denials report.
type denial struct {
	Time      time.Time
	UID       string
	Operation string
	Namespace string
	Username  string
	Groups    []string
	Rule      string
	Message   string
	Revision  string
	// ClientVerified: the caller presented a verified client certificate.
	ClientVerified bool
}

// key identifies a result in the report: the request UID and the rule.
func (d *denial) key() string { return d.UID + "/" + d.Rule }

// queue is a bounded FIFO of denials. A push to a full queue drops the
// oldest entries. The writer takes everything queued as one batch, and puts
// a batch it could not write back in front, where the bound applies again.
// It never blocks beyond its mutex.
type queue struct {
	mu       sync.Mutex
	buf      []denial // ring of len(buf) == capacity
	head, n  int
	inflight int // taken by the writer and not yet done
	ready    chan struct{}
}

func newQueue(capacity int) *queue {
	return &queue{buf: make([]denial, capacity), ready: make(chan struct{}, 1)}
}

// push appends ds and returns how many old entries it dropped.
func (q *queue) push(ds ...denial) (dropped int) {
	q.mu.Lock()
	c := len(q.buf)
	for _, d := range ds {
		if q.n == c {
			q.buf[q.head] = denial{}
			q.head = (q.head + 1) % c
			q.n--
			dropped++
		}
		q.buf[(q.head+q.n)%c] = d
		q.n++
	}
	q.mu.Unlock()
	queueLength.Add(float64(len(ds) - dropped))
	select {
	case q.ready <- struct{}{}:
	default:
	}
	return dropped
}

// take removes and returns every queued entry, oldest first, and counts
// them as in flight until done.
func (q *queue) take() []denial {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]denial, q.n)
	c := len(q.buf)
	for i := range q.n {
		j := (q.head + i) % c
		out[i] = q.buf[j]
		q.buf[j] = denial{}
	}
	q.head, q.n = 0, 0
	q.inflight = len(out)
	return out
}

// done ends the batch in flight: written is how many of its entries left the
// queue for good (the rest were put back with requeue).
func (q *queue) done(written int) {
	q.mu.Lock()
	q.inflight = 0
	q.mu.Unlock()
	queueLength.Sub(float64(written))
}

// requeue puts a batch that was not written back in front of what was
// queued meanwhile, keeps the newest entries within the bound and returns
// how many of the oldest it dropped.
func (q *queue) requeue(batch []denial) (dropped int) {
	q.mu.Lock()
	c := len(q.buf)
	all := make([]denial, 0, len(batch)+q.n)
	all = append(all, batch...)
	for i := range q.n {
		all = append(all, q.buf[(q.head+i)%c])
	}
	if len(all) > c {
		dropped = len(all) - c
		all = all[dropped:]
	}
	clear(q.buf)
	copy(q.buf, all)
	q.head, q.n = 0, len(all)
	q.inflight = 0
	n := q.n
	q.mu.Unlock()
	queueLength.Sub(float64(dropped))
	if n > 0 {
		select {
		case q.ready <- struct{}{}:
		default:
		}
	}
	return dropped
}

// pending is the number of queued and in-flight entries.
func (q *queue) pending() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n + q.inflight
}
