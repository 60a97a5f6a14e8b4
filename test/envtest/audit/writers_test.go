package audit

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nsprov/nsprov/internal/admission"
	"github.com/nsprov/nsprov/internal/audit"
	"github.com/nsprov/nsprov/internal/policy"
)

// Two writers, as two replicas, write one report at the same time: every
// request and rule is there exactly once, including requests that both
// recorded (an API server that retried a webhook call on another replica).
func TestTwoWritersLoseAndDuplicateNothing(t *testing.T) {
	const (
		report   = "nsprov-test-two-writers"
		each     = 300 // requests per replica
		both     = 40  // requests both replicas recorded
		rounds   = 10
		perRound = each / rounds
	)
	o := audit.Options{
		ReportName: report, ReportSize: 5000, FlushInterval: 20 * time.Millisecond,
		EventQueueSize: 1, // the Events are not under test here
		Logger:         bufferLogger(&sinkLog),
	}
	replicas := []*audit.Sink{audit.NewSink(o), audit.NewSink(o)}
	for i, s := range replicas {
		cfg, err := env.User(fmt.Sprintf("system:serviceaccount:nsprov-system:replica-%d", i), "system:masters")
		if err != nil {
			t.Fatal(err)
		}
		stop, err := startWriter(cfg, s)
		if err != nil {
			t.Fatal(err)
		}
		defer stop()
	}
	conflictsBefore := counter(t, "nsprov_audit_report_writes_total", map[string]string{"report": report, "result": "conflict"})

	record := func(s *audit.Sink, uid string) {
		s.Record(context.Background(), &admission.Record{
			Time: time.Now(), Webhook: "validate", UID: uid, Operation: "CREATE", Namespace: uid + "-dev",
			Username: "mallory", Groups: []string{"system:authenticated"}, Allowed: false,
			Violations: []policy.Violation{{Rule: "team-required", Message: "no team"}, {Rule: "request-required", Message: "no request"}},
			Revision:   "test",
		})
	}
	var wg sync.WaitGroup
	for r, s := range replicas {
		wg.Go(func() {
			for round := range rounds {
				for i := range perRound {
					record(s, fmt.Sprintf("replica%d-%04d", r, round*perRound+i))
				}
				if round < both/4 {
					for i := range 4 {
						record(s, fmt.Sprintf("shared-%04d", round*4+i))
					}
				}
				time.Sleep(30 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	for _, s := range replicas {
		waitIdle(t, s, time.Minute)
	}

	got := getReport(context.Background(), t, report)
	if got == nil {
		t.Fatal("no report")
	}
	count := map[string]int{}
	for _, r := range got.Results {
		count[r.Properties[audit.PropRequestUID]+"/"+r.Rule]++
	}
	want := map[string]int{}
	for _, prefix := range []string{"replica0", "replica1"} {
		for i := range each {
			for _, rule := range []string{"team-required", "request-required"} {
				want[fmt.Sprintf("%s-%04d/%s", prefix, i, rule)] = 1
			}
		}
	}
	for i := range both {
		for _, rule := range []string{"team-required", "request-required"} {
			want[fmt.Sprintf("shared-%04d/%s", i, rule)] = 1
		}
	}
	lost, duplicated := 0, 0
	for k := range want {
		switch n := count[k]; {
		case n == 0:
			lost++
		case n > 1:
			duplicated++
		}
	}
	if lost > 0 || duplicated > 0 || len(got.Results) != len(want) {
		t.Errorf("%d results, want %d: %d lost, %d duplicated", len(got.Results), len(want), lost, duplicated)
	}
	if got.Summary.Fail != len(got.Results) {
		t.Errorf("summary %+v for %d results", got.Summary, len(got.Results))
	}
	t.Logf("two writers wrote %d results with %.0f conflicts retried", len(got.Results),
		counter(t, "nsprov_audit_report_writes_total", map[string]string{"report": report, "result": "conflict"})-conflictsBefore)
}
