package audit

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/go-logr/logr"
	reportsv1alpha1 "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/util/flowcontrol"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Metrics of the writer: results persisted and Events emitted (or dropped
// by the sink when the Event queue is full).
var (
	persistedTotal = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "nsprov_audit_records_persisted_total",
		Help: "Denial results (one per violated rule) written into the nsprov-admission-denials ClusterReport.",
	})
	eventsTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "nsprov_audit_events_total",
		Help: "NamespaceRequestDenied Events by result: emitted (handed to the Event recorder) or dropped (the Event queue was full).",
	}, []string{"result"})
)

// Event reason, type and reporting controller of a denial.
const (
	EventReason     = "NamespaceRequestDenied"
	EventController = "nsprov"
)

// maxConflictRetries bounds the read-merge-update rounds of one batch; a
// batch that still conflicts goes back to the queue and is retried later.
const maxConflictRetries = 50

// finalFlushTimeout bounds the last write when the writer stops.
const finalFlushTimeout = 5 * time.Second

// Writer empties a Sink's queues into the cluster: it merges queued denials
// into the nsprov-admission-denials ClusterReport in batches, and emits the
// NamespaceRequestDenied Events. Every replica runs one
// (NeedLeaderElection is false): replicas write the same report safely, by
// read-modify-update with the resourceVersion, retried on conflict with the
// batch merged into the newer object and de-duplicated by request UID and
// rule.
type Writer struct {
	sink        *Sink
	o           Options
	client      client.Client
	broadcaster events.EventBroadcaster
	recorder    events.EventRecorder
	limiter     flowcontrol.RateLimiter
	notice      *crdNotice
	log         logr.Logger

	// limit is the bound in use: ReportSize, or less after the API server
	// refused an object as too large; it grows back by a quarter with each
	// write that succeeds.
	limit int
	// lastErr and lastErrAt keep a repeated write error from flooding the log.
	lastErr   string
	lastErrAt time.Time
}

// NewWriter connects a sink to the cluster of cfg. It sends requests at its
// own pace (at most 20 per second for the report, Options.EventQPS for
// Events), apart from the caller's.
func NewWriter(cfg *rest.Config, sink *Sink) (*Writer, error) {
	registerMetrics()
	rc := rest.CopyConfig(cfg)
	rc.QPS, rc.Burst = 20, 40
	rc.UserAgent = "nsprov-audit"
	c, err := client.New(rc, client.Options{Scheme: Scheme})
	if err != nil {
		return nil, fmt.Errorf("creating the audit client: %w", err)
	}
	ec := rest.CopyConfig(cfg)
	ec.QPS, ec.Burst = sink.o.EventQPS, sink.o.EventBurst
	ec.UserAgent = "nsprov-audit"
	cs, err := kubernetes.NewForConfig(ec)
	if err != nil {
		return nil, fmt.Errorf("creating the Event client: %w", err)
	}
	b := events.NewBroadcaster(&events.EventSinkImpl{Interface: cs.EventsV1()})
	return &Writer{
		sink:        sink,
		o:           sink.o,
		client:      c,
		broadcaster: b,
		recorder:    b.NewRecorder(Scheme, EventController),
		limiter:     flowcontrol.NewTokenBucketRateLimiter(sink.o.EventQPS, sink.o.EventBurst),
		notice:      noticeFor(cfg),
		log:         sink.o.Logger.WithValues("report", sink.o.ReportName),
		limit:       sink.o.ReportSize,
	}, nil
}

// NeedLeaderElection implements controller-runtime's LeaderElectionRunnable:
// every replica writes its own denials.
func (w *Writer) NeedLeaderElection() bool { return false }

// Start writes until ctx ends, then writes what is still queued (for at most
// a few seconds) and returns. It implements controller-runtime's Runnable.
func (w *Writer) Start(ctx context.Context) error {
	if err := w.broadcaster.StartRecordingToSinkWithContext(ctx); err != nil {
		return fmt.Errorf("starting the Event recorder: %w", err)
	}
	defer w.broadcaster.Shutdown()
	var wg sync.WaitGroup
	wg.Go(func() { w.emitEvents(ctx) })
	w.writeReports(ctx)
	wg.Wait()
	return nil
}

func (w *Writer) emitEvents(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-w.sink.events:
			if err := w.limiter.Wait(ctx); err != nil {
				return
			}
			ns := &corev1.Namespace{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"}, ObjectMeta: metav1.ObjectMeta{Name: ev.namespace}}
			w.recorder.Eventf(ns, nil, corev1.EventTypeWarning, EventReason, ev.operation, "%s", ev.note)
			eventsTotal.WithLabelValues("emitted").Inc()
		}
	}
}

func (w *Writer) writeReports(ctx context.Context) {
	q := w.sink.queue
	backoff := time.Duration(0)
	for {
		select {
		case <-ctx.Done():
			w.finalFlush()
			return
		case <-q.ready:
		}
		// Gather a batch: one write per flush interval at most.
		select {
		case <-ctx.Done():
			w.finalFlush()
			return
		case <-time.After(w.o.FlushInterval):
		}
		if err := w.flush(ctx); err != nil {
			wait := w.o.RetryInterval
			if !errors.Is(err, errNoCRD) {
				backoff = min(max(2*backoff, time.Second), w.o.RetryInterval)
				wait = backoff
			}
			select {
			case <-ctx.Done():
				w.finalFlush()
				return
			case <-time.After(wait):
			}
			continue
		}
		backoff = 0
	}
}

// finalFlush writes what is queued when the writer stops, unless the
// report cannot be written anyway.
func (w *Writer) finalFlush() {
	if w.sink.queue.pending() == 0 || w.notice.missing.Load() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), finalFlushTimeout)
	defer cancel()
	_ = w.flush(ctx)
}

// flush takes everything queued and writes it as one batch; a batch that
// fails goes back to the queue.
func (w *Writer) flush(ctx context.Context) error {
	q := w.sink.queue
	batch := q.take()
	if len(batch) == 0 {
		q.done(0)
		return nil
	}
	left, err := w.write(ctx, batch)
	if err != nil {
		if dropped := q.requeue(left); dropped > 0 {
			droppedTotal.WithLabelValues(DropQueueFull).Add(float64(dropped))
		}
		// The results dropped as too large left the queue for good.
		queueLength.Sub(float64(len(batch) - len(left)))
		return err
	}
	q.done(len(batch))
	return nil
}

// write merges batch into the latest report: read, merge, update with the
// read resourceVersion, and again on a conflict. When the API server refuses
// the report as too large, the report keeps half as many results and the
// write is tried again; when a report of a single new result is still too
// large, that result can never be written: it is dropped from the batch and
// counted (DropTooLarge). write returns what is left of the batch.
func (w *Writer) write(ctx context.Context, batch []denial) ([]denial, error) {
	name := w.o.ReportName
	start := w.limit
	for attempt := 1; ; attempt++ {
		report := &reportsv1alpha1.ClusterReport{}
		err := w.client.Get(ctx, client.ObjectKey{Name: name}, report)
		creating := apierrors.IsNotFound(err)
		switch {
		case creating:
			report = newReport(name, w.o.ReportSize)
		case err != nil:
			return batch, w.failed(err, false)
		}
		m := mergeDenials(report.Results, batch, w.limit)
		if m.added == 0 && !creating {
			w.succeeded()
			return batch, nil // every result is there already: a retry of a write that went through
		}
		report.Results = m.results
		report.Summary = summarize(m.results)
		report.Source = Source
		if creating {
			err = w.client.Create(ctx, report)
		} else {
			err = w.client.Update(ctx, report)
		}
		switch {
		case err == nil:
			reportWritesTotal.WithLabelValues(name, "success").Inc()
			persistedTotal.Add(float64(m.added - m.trimmedNew))
			if m.trimmed > 0 {
				droppedTotal.WithLabelValues(DropReportBound).Add(float64(m.trimmed))
			}
			w.succeeded()
			if w.limit < w.o.ReportSize {
				w.limit = min(w.o.ReportSize, w.limit+w.limit/4+1)
			}
			return batch, nil
		case apierrors.IsConflict(err) || (creating && apierrors.IsAlreadyExists(err)):
			// Another replica wrote first: merge into its object.
			reportWritesTotal.WithLabelValues(name, "conflict").Inc()
			if attempt >= maxConflictRetries {
				return batch, w.failed(fmt.Errorf("still conflicting after %d attempts: %w", attempt, err), creating)
			}
			select {
			case <-ctx.Done():
				return batch, ctx.Err()
			case <-time.After(time.Duration(rand.Int64N(int64(20 * time.Millisecond)))):
			}
		case isTooLarge(err) && len(m.results) > 1:
			reportWritesTotal.WithLabelValues(name, "error").Inc()
			w.limit = max(1, min(w.limit, len(m.results))/2)
			w.log.Error(err, "the report is too large for the API server; keeping fewer results for now", "keep", w.limit, "reportSize", w.o.ReportSize)
		case isTooLarge(err) && len(m.results) == 1 && inBatch(batch, resultKey(&m.results[0])):
			// The newest result alone is too large: drop it, and write the
			// rest of the batch with the bound this write started with.
			reportWritesTotal.WithLabelValues(name, "error").Inc()
			key := resultKey(&m.results[0])
			kept := batch[:0:0]
			for i := range batch {
				if batch[i].key() != key {
					kept = append(kept, batch[i])
				}
			}
			droppedTotal.WithLabelValues(DropTooLarge).Add(float64(len(batch) - len(kept)))
			w.log.Error(err, "a denial result is too large for the API server on its own; it is dropped", "requestUID", m.results[0].Properties[PropRequestUID], "rule", m.results[0].Rule)
			batch, w.limit = kept, start
			if len(batch) == 0 {
				return batch, nil
			}
		default:
			return batch, w.failed(err, creating)
		}
	}
}

// inBatch tells whether a denial of batch has this result key.
func inBatch(batch []denial, key string) bool {
	for i := range batch {
		if batch[i].key() == key {
			return true
		}
	}
	return false
}

func (w *Writer) succeeded() {
	w.notice.present(w.log)
	w.lastErr = ""
}

func (w *Writer) failed(err error, creating bool) error {
	if isNoCRD(err, creating) {
		w.notice.absent(w.log)
		return errNoCRD
	}
	reportWritesTotal.WithLabelValues(w.o.ReportName, "error").Inc()
	if err.Error() != w.lastErr || time.Since(w.lastErrAt) > 5*time.Minute {
		w.log.Error(err, "cannot write the denial report; the denials stay queued and are retried", "queued", w.sink.queue.pending())
		w.lastErr, w.lastErrAt = err.Error(), time.Now()
	}
	return err
}
