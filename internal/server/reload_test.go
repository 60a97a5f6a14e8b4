package server

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"k8s.io/client-go/tools/events"

	"github.com/nsprov/nsprov/policies"
)

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The reporter counts each reload and each rejected edit once, and raises a
// Warning Event on the pod for a rejected edit; the counters are registered
// explicitly, and registering them twice is harmless.
func TestReloadReporter(t *testing.T) {
	t.Setenv("POD_NAME", "nsprov-0")
	t.Setenv("POD_NAMESPACE", "nsprov-system")
	reg := prometheus.NewRegistry()
	for range 2 {
		if err := registerReloadMetrics(reg); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	if err := policies.Export(dir); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	o := PolicyOptions{Dir: dir, PollInterval: 100 * time.Millisecond, Evaluator: "compiled"}
	store, err := o.NewStore(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rec := events.NewFakeRecorder(10)
	r := newReloadReporter(store, dir, rec, logr.Discard())
	reloads, rejections := testutil.ToFloat64(policyReloads), testutil.ToFloat64(policyReloadErrors)
	go func() { _ = store.Watch(ctx) }()
	go func() { _ = r.Start(ctx) }()

	tiers := filepath.Join(dir, "config", "tiers.yaml")
	data, err := os.ReadFile(tiers)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tiers, append(data, []byte("\n# edited\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the reload counted", func() bool { return testutil.ToFloat64(policyReloads) == reloads+1 })

	lib := filepath.Join(dir, "lib.rego")
	f, err := os.OpenFile(lib, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("\nbroken := {\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	waitFor(t, "the rejection counted", func() bool { return testutil.ToFloat64(policyReloadErrors) == rejections+1 })
	select {
	case e := <-rec.Events:
		if !strings.Contains(e, "Warning "+ReasonPolicyReloadFailed) || !strings.Contains(e, "lib.rego") || !strings.Contains(e, dir) {
			t.Errorf("event %q, want a %s warning naming %s and lib.rego", e, ReasonPolicyReloadFailed, dir)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no Event for the rejected edit")
	}
	time.Sleep(300 * time.Millisecond) // three more polls of the unchanged broken directory
	if got := testutil.ToFloat64(policyReloads); got != reloads+1 {
		t.Errorf("%s = %v, want %v", "nsprov_policy_reloads_total", got, reloads+1)
	}
	if got := testutil.ToFloat64(policyReloadErrors); got != rejections+1 {
		t.Errorf("%s = %v, want %v", "nsprov_policy_reload_errors_total", got, rejections+1)
	}
	if n, err := testutil.GatherAndCount(reg, "nsprov_policy_reloads_total", "nsprov_policy_reload_errors_total"); err != nil || n != 2 {
		t.Errorf("the registry serves %d reload series (%v), want 2", n, err)
	}
}
