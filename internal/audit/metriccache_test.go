package audit

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/nsprov/nsprov/internal/admission"
)

// The counters looked up once count what WithLabelValues counts, for the
// usual label values and for any other.
func TestRequestCountersCached(t *testing.T) {
	s := NewSink(Options{DecisionLog: &bytes.Buffer{}})
	for _, r := range []admission.Record{
		{Webhook: "mutate", Operation: "UPDATE", Allowed: true},
		{Webhook: "validate", Operation: "CREATE", Allowed: true},
		{Webhook: "validate", Operation: "CONNECT", Allowed: true},
		{Webhook: "other", Operation: "CREATE", Allowed: true},
	} {
		before := testutil.ToFloat64(requestsTotal.WithLabelValues(r.Webhook, r.Operation, "allowed"))
		for range 3 {
			rec := r
			rec.Latency = time.Millisecond
			s.Record(context.Background(), &rec)
		}
		if d := testutil.ToFloat64(requestsTotal.WithLabelValues(r.Webhook, r.Operation, "allowed")) - before; d != 3 {
			t.Errorf("%s %s: counted %v, want 3", r.Webhook, r.Operation, d)
		}
	}
	if requestsCounter("validate", "CREATE", "allowed") != requestsTotal.WithLabelValues("validate", "CREATE", "allowed") {
		t.Error("the cached counter is not the vector's")
	}
	if durationObserver("mutate") != durationSeconds.WithLabelValues("mutate") {
		t.Error("the cached observer is not the vector's")
	}
}
