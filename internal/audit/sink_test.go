package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/nsprov/nsprov/internal/admission"
	"github.com/nsprov/nsprov/internal/policy"
)

func denied(uid string, dryRun bool) *admission.Record {
	return &admission.Record{
		Time: t0, Webhook: "validate", UID: uid, Operation: "CREATE", Namespace: "web-prod",
		Username: "bob", Groups: []string{"team-web", "system:authenticated"}, Allowed: false,
		Violations: []policy.Violation{
			{Rule: "requester-not-in-team", Message: "not in team"},
			{Rule: "managed-metadata-forged", Message: "label forged"},
			{Rule: "managed-metadata-forged", Message: "annotation forged"},
		},
		Warnings: []string{"open is discouraged"}, DryRun: dryRun, Revision: "abc123", Latency: 1500 * time.Microsecond,
	}
}

func TestDecisionLogLine(t *testing.T) {
	var out bytes.Buffer
	s := NewSink(Options{DecisionLog: &out})
	s.Record(context.Background(), denied("uid-1", true))
	s.Record(context.Background(), &admission.Record{Time: t0, Webhook: "mutate", UID: "uid-2", Operation: "UPDATE", Namespace: "a-dev", Username: "alice", Allowed: true, Patches: 2, Revision: "abc123"})
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 lines, got %q", out.String())
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &got); err != nil {
		t.Fatalf("line 1 is not JSON: %v: %s", err, lines[0])
	}
	want := map[string]any{
		"time": "2025-01-02T03:04:05.0000006Z", "msg": DecisionLogMessage, "webhook": "validate", "uid": "uid-1",
		"operation": "CREATE", "namespace": "web-prod", "user": "bob", "allowed": false, "dryRun": true,
		"policyRevision": "abc123", "latencySeconds": 0.0015,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %#v, want %#v", k, got[k], v)
		}
	}
	if g, _ := json.Marshal(got["groups"]); string(g) != `["team-web","system:authenticated"]` {
		t.Errorf("groups %s", g)
	}
	if v, _ := json.Marshal(got["violations"]); !strings.Contains(string(v), `{"message":"not in team","rule":"requester-not-in-team"}`) {
		t.Errorf("violations %s", v)
	}
	if w, _ := json.Marshal(got["warnings"]); string(w) != `["open is discouraged"]` {
		t.Errorf("warnings %s", w)
	}
	var allowed map[string]any
	if err := json.Unmarshal([]byte(lines[1]), &allowed); err != nil {
		t.Fatal(err)
	}
	if allowed["allowed"] != true || allowed["patches"] != 2.0 || allowed["webhook"] != "mutate" {
		t.Errorf("allowed line %s", lines[1])
	}
	if v, _ := json.Marshal(allowed["violations"]); string(v) != "[]" {
		t.Errorf("an allowed decision has violations %s, want []", v)
	}
}

// Without a decision log, decisions go to the process log as before.
func TestNoDecisionLogFallsBackToTheProcessLog(t *testing.T) {
	var out bytes.Buffer
	log := funcr.New(func(prefix, args string) { out.WriteString(args + "\n") }, funcr.Options{})
	s := NewSink(Options{})
	s.Record(logr.NewContext(context.Background(), log), denied("uid-fallback", false))
	if !strings.Contains(out.String(), "admission denied") || !strings.Contains(out.String(), "uid-fallback") {
		t.Errorf("process log: %s", out.String())
	}
}

func TestSinkQueuesOnlyPersistentDenials(t *testing.T) {
	s := NewSink(Options{DecisionLog: &bytes.Buffer{}})
	ctx := context.Background()
	s.Record(ctx, denied("dry", true))
	s.Record(ctx, &admission.Record{Webhook: "validate", UID: "ok", Operation: "CREATE", Allowed: true})
	s.Record(ctx, &admission.Record{Webhook: "validate", UID: "err", Operation: "CREATE", Err: errors.New("boom")})
	if s.Pending() != 0 || len(s.events) != 0 {
		t.Fatalf("queued %d results and %d events for dry-run, allowed and failed requests", s.Pending(), len(s.events))
	}
	s.Record(ctx, denied("real", false))
	batch := s.queue.take()
	if len(batch) != 2 {
		t.Fatalf("want one result per violated rule (2), got %+v", batch)
	}
	if batch[0].Rule != "managed-metadata-forged" || batch[0].Message != "label forged; annotation forged" || batch[1].Rule != "requester-not-in-team" {
		t.Errorf("results %+v", batch)
	}
	ev := <-s.events
	if ev.namespace != "web-prod" || ev.operation != "CREATE" ||
		ev.note != "namespace web-prod: CREATE by bob denied by managed-metadata-forged, requester-not-in-team" {
		t.Errorf("event %+v", ev)
	}
}

func TestSinkMetrics(t *testing.T) {
	s := NewSink(Options{DecisionLog: &bytes.Buffer{}, QueueSize: 3, EventQueueSize: 1})
	ctx := context.Background()
	before := map[string]float64{
		"denied":    testutil.ToFloat64(requestsTotal.WithLabelValues("validate", "CREATE", "denied")),
		"error":     testutil.ToFloat64(requestsTotal.WithLabelValues("validate", "CREATE", "error")),
		"rule":      testutil.ToFloat64(violationsTotal.WithLabelValues("requester-not-in-team")),
		"queueFull": testutil.ToFloat64(droppedTotal.WithLabelValues(DropQueueFull)),
		"events":    testutil.ToFloat64(eventsTotal.WithLabelValues("dropped")),
	}
	s.Record(ctx, denied("a", false)) // 2 results, 1 event
	s.Record(ctx, denied("b", false)) // 2 results: one old one dropped; the event queue is full
	s.Record(ctx, denied("c", true))  // dry run: counted, not queued
	s.Record(ctx, &admission.Record{Webhook: "validate", UID: "e", Operation: "CREATE", Err: errors.New("boom")})
	delta := func(name string, now float64) float64 { return now - before[name] }
	if d := delta("denied", testutil.ToFloat64(requestsTotal.WithLabelValues("validate", "CREATE", "denied"))); d != 3 {
		t.Errorf("denied requests +%v, want +3", d)
	}
	if d := delta("error", testutil.ToFloat64(requestsTotal.WithLabelValues("validate", "CREATE", "error"))); d != 1 {
		t.Errorf("failed requests +%v, want +1", d)
	}
	if d := delta("rule", testutil.ToFloat64(violationsTotal.WithLabelValues("requester-not-in-team"))); d != 3 {
		t.Errorf("violations of requester-not-in-team +%v, want +3 (dry-run included)", d)
	}
	if d := delta("queueFull", testutil.ToFloat64(droppedTotal.WithLabelValues(DropQueueFull))); d != 1 {
		t.Errorf("queue-full drops +%v, want +1", d)
	}
	if d := delta("events", testutil.ToFloat64(eventsTotal.WithLabelValues("dropped"))); d != 1 {
		t.Errorf("dropped events +%v, want +1", d)
	}
	if got := uids(s.queue.take()); strings.Join(got, ",") != "a,b,b" {
		t.Errorf("queue holds %v, want the newest three results", got)
	}
	if testutil.CollectAndCount(durationSeconds) == 0 {
		t.Error("no latency observed")
	}
}

func TestPolicyInfo(t *testing.T) {
	b, err := policy.LoadEmbedded(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ObservePolicies(policy.StaticStore(b))
	defer activePolicies.Store(nil)
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "nsprov_policy_info" {
			continue
		}
		if len(f.Metric) != 1 || f.Metric[0].GetGauge().GetValue() != 1 {
			t.Fatalf("nsprov_policy_info = %v, want one series set to 1", f.Metric)
		}
		labels := map[string]string{}
		for _, l := range f.Metric[0].GetLabel() {
			labels[l.GetName()] = l.GetValue()
		}
		if want := map[string]string{"revision": b.Revision, "source": "embedded", "evaluator": "compiled"}; !maps.Equal(labels, want) {
			t.Fatalf("nsprov_policy_info labels %v, want %v", labels, want)
		}
		return
	}
	t.Fatal("nsprov_policy_info is not registered")
}
