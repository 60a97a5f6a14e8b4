package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	reportsv1alpha1 "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	"github.com/prometheus/client_golang/prometheus/testutil"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"
)

// The writer's handling of "too large" needs an API server that refuses
// objects above a size chosen by the test: a fake client whose Create and
// Update refuse a ClusterReport whose JSON is longer than maxBytes, as the
// API server and etcd refuse an object over their limits. (The envtest
// suite in test/envtest/audit covers the writer against a real API server.)

// sizeLimitedWriter returns a writer for s whose API server refuses reports
// larger than *maxBytes, and that client.
func sizeLimitedWriter(s *Sink, maxBytes *atomic.Int64) (*Writer, client.Client) {
	refuse := func(obj client.Object) error {
		b, err := json.Marshal(obj)
		if err != nil {
			return err
		}
		if int64(len(b)) > maxBytes.Load() {
			return apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("the object is %d bytes, more than %d", len(b), maxBytes.Load()))
		}
		return nil
	}
	c := fake.NewClientBuilder().WithScheme(Scheme).WithInterceptorFuncs(interceptor.Funcs{
		Create: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.CreateOption) error {
			if err := refuse(obj); err != nil {
				return err
			}
			return c.Create(ctx, obj, opts...)
		},
		Update: func(ctx context.Context, c client.WithWatch, obj client.Object, opts ...client.UpdateOption) error {
			if err := refuse(obj); err != nil {
				return err
			}
			return c.Update(ctx, obj, opts...)
		},
	}).Build()
	return &Writer{sink: s, o: s.o, client: c, notice: &crdNotice{}, log: logr.Discard(), limit: s.o.ReportSize}, c
}

var seq atomic.Int64

// queueDenials queues n denials with messages of size bytes, one second
// apart and later than every denial queued before.
func queueDenials(s *Sink, n, size int) {
	for range n {
		i := seq.Add(1)
		s.queue.push(denial{
			Time: t0.Add(time.Duration(i) * time.Second), UID: fmt.Sprintf("uid-%05d", i), Operation: "CREATE",
			Namespace: "web-prod", Username: "bob", Groups: []string{"team-web"}, Rule: "rule",
			Message: fmt.Sprintf("%05d %s", i, strings.Repeat("m", size)), Revision: "abc123",
		})
	}
}

// reportBytes is the JSON size of a report holding these denials.
func reportBytes(t *testing.T, ds []denial) int64 {
	r := newReport(DenialsReportName, len(ds))
	r.Results = mergeDenials(nil, ds, len(ds)).results
	r.Summary = summarize(r.Results)
	r.Source = Source
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return int64(len(b))
}

func results(t *testing.T, c client.Client) []reportsv1alpha1.ReportResult {
	t.Helper()
	r := &reportsv1alpha1.ClusterReport{}
	if err := c.Get(context.Background(), client.ObjectKey{Name: DenialsReportName}, r); err != nil {
		t.Fatal(err)
	}
	return r.Results
}

// TestWriterRecoversAfterTooLarge: a burst of long messages makes the report
// too large, and the writer keeps fewer results; once the messages are
// short again, the report holds ReportSize results again.
func TestWriterRecoversAfterTooLarge(t *testing.T) {
	const size = 100
	s := NewSink(Options{ReportSize: size, QueueSize: 1000})
	// The API server takes a report of 100 results with short messages and
	// a little more, far from 100 with 1 KiB messages.
	short := make([]denial, size)
	for i := range short {
		short[i] = denial{Time: t0, UID: fmt.Sprintf("uid-%05d", i), Operation: "CREATE", Namespace: "web-prod",
			Username: "bob", Groups: []string{"team-web"}, Rule: "rule", Message: fmt.Sprintf("%05d %s", i, strings.Repeat("m", 20)), Revision: "abc123"}
	}
	var maxBytes atomic.Int64
	maxBytes.Store(reportBytes(t, short) + 4<<10)
	w, c := sizeLimitedWriter(s, &maxBytes)
	ctx := context.Background()

	queueDenials(s, size, maxMessage)
	if err := w.flush(ctx); err != nil {
		t.Fatalf("writing a report of long messages: %v", err)
	}
	long := len(results(t, c))
	if long >= size {
		t.Fatalf("the report holds %d results of 1 KiB, the API server should have refused that many", long)
	}
	for round := range 20 {
		queueDenials(s, 20, 20)
		if err := w.flush(ctx); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
	}
	got := len(results(t, c))
	t.Logf("the report held %d results with long messages; with short ones again it holds %d (limit %d, report size %d)", long, got, w.limit, size)
	if got != size {
		t.Errorf("the report holds %d results with short messages, want %d: the writer did not recover from the too-large error", got, size)
	}
}

// TestWriterDropsAResultThatNeverFits: a result too large for the API
// server on its own is dropped and counted, the others are written, and
// nothing is retried forever.
func TestWriterDropsAResultThatNeverFits(t *testing.T) {
	s := NewSink(Options{ReportSize: 100, QueueSize: 1000})
	queueDenials(s, 2, 10)
	queueDenials(s, 1, maxMessage)
	batch := s.queue.take()
	big := &batch[2]
	big.Username, big.Namespace = strings.Repeat("u", 256), strings.Repeat("n", 256)
	big.Groups = []string{strings.Repeat("g", maxGroups)}
	var maxBytes atomic.Int64
	// Room for the two short results (with some to spare), not for the long
	// one alone.
	maxBytes.Store(reportBytes(t, batch[2:]) - 1)
	if two := reportBytes(t, batch[:2]); two+600 > maxBytes.Load() {
		t.Fatalf("test setup: the two short results (%d bytes) do not fit in %d with room to spare", two, maxBytes.Load())
	}
	s.queue.requeue(batch)
	w, c := sizeLimitedWriter(s, &maxBytes)
	before := testutil.ToFloat64(droppedTotal.WithLabelValues(DropTooLarge))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.flush(ctx); err != nil {
		t.Fatalf("flush: %v; the results that fit are not written", err)
	}
	if p := s.Pending(); p != 0 {
		t.Errorf("%d results still queued, want none: the one that never fits must not be retried", p)
	}
	var uids []string
	for _, r := range results(t, c) {
		uids = append(uids, r.Properties[PropRequestUID])
	}
	if len(uids) != 2 || uids[0] != batch[0].UID || uids[1] != batch[1].UID {
		t.Errorf("the report holds %v, want %s and %s", uids, batch[0].UID, batch[1].UID)
	}
	if d := testutil.ToFloat64(droppedTotal.WithLabelValues(DropTooLarge)) - before; d != 1 {
		t.Errorf("too-large drops +%v, want +1", d)
	}
	// The next results are written as usual.
	queueDenials(s, 1, 10)
	if err := w.flush(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(results(t, c)); n != 3 {
		t.Errorf("the report holds %d results after one more, want 3", n)
	}
}
