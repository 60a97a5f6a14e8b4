package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/nsprov/nsprov/internal/admission"
	"github.com/nsprov/nsprov/internal/policy"
)

// hugeDenial is a denied record as no handler makes it, unbounded: 5,000
// violations of one rule with 2 KiB messages, a 100 KiB user, UID and
// namespace, 1,000 groups and a 100 KiB error text.
func hugeDenial() *admission.Record {
	big := strings.Repeat("x", 100<<10)
	vs := make([]policy.Violation, 5000)
	for i := range vs {
		vs[i] = policy.Violation{Rule: "value-empty", Message: fmt.Sprintf("%d %s", i, strings.Repeat("m", 2048))}
	}
	vs = append(vs, policy.Violation{Rule: strings.Repeat("r", 10<<10), Message: "a long rule ID"})
	groups := make([]string, 1000)
	for i := range groups {
		groups[i] = fmt.Sprintf("g%d-%s", i, strings.Repeat("g", 300))
	}
	return &admission.Record{
		Time: t0, Webhook: "validate", UID: "u" + big, Operation: "CREATE", Namespace: "n" + big, Username: big,
		Groups: groups, Violations: vs, Warnings: []string{big, big}, Revision: "abc123",
	}
}

// TestSinkBoundsWhatItStores records an unbounded denial: every string the
// sink keeps in its queue, writes to the decision log or puts in an Event is
// bounded.
func TestSinkBoundsWhatItStores(t *testing.T) {
	var out bytes.Buffer
	s := NewSink(Options{DecisionLog: &out})
	s.Record(context.Background(), hugeDenial())
	failed := hugeDenial()
	failed.Err = errors.New(strings.Repeat("e", 100<<10))
	s.Record(context.Background(), failed)

	for i, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if len(line) > maxDecisionLine {
			t.Errorf("decision log line %d is %d bytes, more than %d", i+1, len(line), maxDecisionLine)
		}
	}
	batch := s.queue.take()
	if len(batch) == 0 {
		t.Fatal("nothing queued")
	}
	total := 0
	for _, d := range batch {
		n := len(d.UID) + len(d.Operation) + len(d.Namespace) + len(d.Username) + len(d.Rule) + len(d.Message) + len(d.Revision)
		for _, g := range d.Groups {
			n += len(g)
		}
		total += n
		if len(d.Message) > maxMessage {
			t.Errorf("a queued message is %d bytes, more than %d", len(d.Message), maxMessage)
		}
		if len(d.Rule) > admission.MaxFieldBytes || len(d.Username) > admission.MaxFieldBytes || len(d.Namespace) > admission.MaxFieldBytes || len(d.UID) > admission.MaxFieldBytes {
			t.Errorf("a queued field is longer than %d bytes", admission.MaxFieldBytes)
		}
	}
	t.Logf("%d results queued, %d bytes of strings; decision log %d bytes", len(batch), total, out.Len())
	if total > 64<<10 {
		t.Errorf("the queued results hold %d bytes of strings, more than 64 KiB", total)
	}
	ev := <-s.events
	if len(ev.note) > maxNote || len(ev.namespace) > admission.MaxFieldBytes {
		t.Errorf("event note %d bytes, namespace %d bytes", len(ev.note), len(ev.namespace))
	}
}

// TestDecisionCacheMetrics: the active bundle's decision cache reports its
// size, so its share of the heap can be watched.
func TestDecisionCacheMetrics(t *testing.T) {
	b, err := policy.LoadEmbedded(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	ObservePolicies(policy.StaticStore(b))
	defer activePolicies.Store(nil)
	req := &policy.Request{UID: "1", Operation: "CREATE", Username: "alice", Groups: []string{"team-payments"}, Object: &corev1.Namespace{}}
	req.Object.Name = "payments-dev"
	req.Object.Annotations = map[string]string{"nsprov.io/team": "payments", "nsprov.io/environment": "development"}
	for range 2 {
		if _, err := b.Validate(context.Background(), req); err != nil {
			t.Fatal(err)
		}
	}
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, m := range f.Metric {
			name := f.GetName()
			for _, l := range m.GetLabel() {
				name += "/" + l.GetValue()
			}
			got[name] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	if got["nsprov_policy_decision_cache_bytes"] <= 0 || got["nsprov_policy_decision_cache_entries"] != 1 ||
		got["nsprov_policy_decision_cache_lookups_total/hit"] != 1 || got["nsprov_policy_decision_cache_lookups_total/miss"] != 1 {
		t.Errorf("decision cache metrics: bytes %v, entries %v, hits %v, misses %v; want bytes > 0, 1 entry, 1 hit, 1 miss",
			got["nsprov_policy_decision_cache_bytes"], got["nsprov_policy_decision_cache_entries"],
			got["nsprov_policy_decision_cache_lookups_total/hit"], got["nsprov_policy_decision_cache_lookups_total/miss"])
	}
}
