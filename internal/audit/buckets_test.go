package audit

import (
	"testing"

	"sigs.k8s.io/controller-runtime/pkg/metrics"
)

// TestDurationBucketsReachTheWebhookTimeout checks that
// nsprov_admission_duration_seconds can tell latencies apart up to the
// longest webhook timeout the API server allows (30s, the chart's
// webhook.timeoutSeconds maximum): histogram_quantile reports a quantile
// above the highest finite bucket as that bucket, so with buckets ending at
// 1s the chart's NsprovWebhookLatency alert (p99 > latencySeconds, 1 by
// default) could never fire.
func TestDurationBucketsReachTheWebhookTimeout(t *testing.T) {
	registerMetrics()
	durationSeconds.WithLabelValues("bucket-test").Observe(0)
	defer durationSeconds.DeleteLabelValues("bucket-test")
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var bounds []float64
	for _, f := range families {
		if f.GetName() != "nsprov_admission_duration_seconds" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "webhook" && l.GetValue() == "bucket-test" {
					for _, b := range m.GetHistogram().GetBucket() {
						bounds = append(bounds, b.GetUpperBound())
					}
				}
			}
		}
	}
	if len(bounds) == 0 {
		t.Fatal("nsprov_admission_duration_seconds is not registered in the metrics registry nsprov serves")
	}
	if bounds[len(bounds)-1] < 30 {
		t.Fatalf("the highest finite bucket of nsprov_admission_duration_seconds is %v (buckets %v), want at least 30 (the longest webhook timeout)", bounds[len(bounds)-1:], bounds)
	}
	for _, want := range []float64{1, 2.5, 5, 10} {
		found := false
		for _, b := range bounds {
			found = found || b == want
		}
		if !found {
			t.Errorf("no bucket at %gs in %v: latencies between 1s and the timeout need buckets to be told apart", want, bounds)
		}
	}
}
