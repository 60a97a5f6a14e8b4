package audit

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/nsprov/nsprov/internal/audit"
)

const (
	flood   = 2000
	clients = 20
)

// 2,000 denials from 20 concurrent clients: admission keeps answering, the
// report holds exactly its bound of the newest results with the right
// summary, and the dropped metric accounts for every other result.
func TestFloodOfDenials(t *testing.T) {
	ctx := context.Background()
	alice := aliceClient(t)
	waitIdle(t, sink, time.Minute)
	before := 0
	if r := getReport(ctx, t, audit.DenialsReportName); r != nil {
		before = len(r.Results)
	}
	droppedBefore := counter(t, "nsprov_audit_records_dropped_total", nil)
	conflictsBefore := counter(t, "nsprov_audit_report_writes_total", map[string]string{"report": audit.DenialsReportName, "result": "conflict"})
	writesBefore := counter(t, "nsprov_audit_report_writes_total", map[string]string{"report": audit.DenialsReportName, "result": "success"})

	latencies := make([]time.Duration, flood)
	errs := make(chan error, flood)
	start := time.Now()
	var wg sync.WaitGroup
	for c := range clients {
		wg.Go(func() {
			for i := c; i < flood; i += clients {
				// One violated rule each: a large tier in development.
				t0 := time.Now()
				err := alice.Create(ctx, requested(fmt.Sprintf("flood-%04d-dev", i), "large"))
				latencies[i] = time.Since(t0)
				if !apierrors.IsForbidden(err) {
					errs <- fmt.Errorf("request %d: %v, want a denial", i, err)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	slices.Sort(latencies)
	pct := func(p float64) time.Duration { return latencies[int(p*float64(flood-1))].Round(10 * time.Microsecond) }
	t.Logf("%d denials from %d clients in %s (%.0f/s); client-side latency p50 %s, p95 %s, p99 %s, max %s",
		flood, clients, elapsed.Round(time.Millisecond), float64(flood)/elapsed.Seconds(), pct(0.50), pct(0.95), pct(0.99), latencies[flood-1].Round(10*time.Microsecond))

	drained := time.Now()
	waitIdle(t, sink, 2*time.Minute)
	t.Logf("the writer caught up %s after the flood, in %.0f writes with %.0f conflicts",
		time.Since(drained).Round(10*time.Millisecond),
		counter(t, "nsprov_audit_report_writes_total", map[string]string{"report": audit.DenialsReportName, "result": "success"})-writesBefore,
		counter(t, "nsprov_audit_report_writes_total", map[string]string{"report": audit.DenialsReportName, "result": "conflict"})-conflictsBefore)

	// The newest reportSize denials, by the time the webhook decided them.
	floodDecisions := validations(t, func(ns string) bool { return strings.HasPrefix(ns, "flood-") })
	if len(floodDecisions) != flood {
		t.Fatalf("%d flood decisions in the decision log, want %d", len(floodDecisions), flood)
	}
	sort.Slice(floodDecisions, func(i, j int) bool { return floodDecisions[i].Time.Before(floodDecisions[j].Time) })
	var want []string
	for _, d := range floodDecisions[flood-reportSize:] {
		want = append(want, d.UID)
	}

	report := getReport(ctx, t, audit.DenialsReportName)
	var got []string
	for _, r := range report.Results {
		got = append(got, r.Properties[audit.PropRequestUID])
	}
	if len(report.Results) != reportSize {
		t.Errorf("the report holds %d results, want exactly %d", len(report.Results), reportSize)
	}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("the report does not hold the newest %d denials: %d of them missing", reportSize, len(difference(want, got)))
	}
	if report.Summary.Fail != len(report.Results) || report.Summary.Pass != 0 || report.Summary.Error != 0 {
		t.Errorf("summary %+v for %d results", report.Summary, len(report.Results))
	}
	dropped := counter(t, "nsprov_audit_records_dropped_total", nil) - droppedBefore
	queueFull := counter(t, "nsprov_audit_records_dropped_total", map[string]string{"reason": audit.DropQueueFull})
	t.Logf("dropped %v results (queue-full in total: %v); %d kept", dropped, queueFull, len(report.Results))
	if int(dropped)+len(report.Results) != before+flood {
		t.Errorf("persisted %d + dropped %v != %d results (%d before the flood + %d)", len(report.Results), dropped, before+flood, before, flood)
	}
}

func difference(a, b []string) []string {
	in := map[string]bool{}
	for _, x := range b {
		in[x] = true
	}
	var out []string
	for _, x := range a {
		if !in[x] {
			out = append(out, x)
		}
	}
	return out
}
