// Package burst measures the provisioning controller under a burst of
// requested namespaces: how long until every one has its Workflow, and the
// process's heap. It only logs the figures (README reports them); it asserts
// correctness, never timing.
package burst

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/nsprov/nsprov/test/envtest"
)

const burst = 500

func TestBurstOfNamespaces(t *testing.T) {
	ctx := context.Background()
	// Without the runner the Workflows stay pending: this measures the
	// webhooks and the controller, not kubectl.
	env, err := envtest.Start(ctx, envtest.Options{NoRunner: true})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = env.Stop() }()
	cfg, err := env.User("alice", "team-payments")
	if err != nil {
		t.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 500, 1000
	alice, err := client.New(cfg, client.Options{Scheme: envtest.Scheme})
	if err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, burst)
	sem := make(chan struct{}, 16)
	for i := range burst {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
				Name:        fmt.Sprintf("burst-%03d-dev", i),
				Annotations: map[string]string{"nsprov.io/team": "payments", "nsprov.io/environment": "development"},
			}}
			if err := alice.Create(ctx, ns); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("creating a namespace through the webhooks: %v", err)
	}
	admitted := time.Since(start)

	deadline := time.Now().Add(5 * time.Minute)
	var n int
	for {
		list := &wfv1.WorkflowList{}
		if err := env.Client.List(ctx, list, client.InNamespace(envtest.ArgoNamespace)); err != nil {
			t.Fatal(err)
		}
		seen := map[string]int{}
		for _, wf := range list.Items {
			seen[wf.Labels["nsprov.io/namespace"]]++
		}
		n = len(seen)
		for name, count := range seen {
			if count != 1 {
				t.Fatalf("namespace %s has %d workflows, want 1", name, count)
			}
		}
		if n == burst {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 5 minutes %d of %d namespaces have a workflow", n, burst)
		}
		time.Sleep(100 * time.Millisecond)
	}
	all := time.Since(start)
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	t.Logf("burst of %d namespaces: admitted through both webhooks in %s (%.0f/s); every one had its Workflow after %s; heap in use %d MiB (webhooks, controller, runner-less harness and clients in one process)",
		burst, admitted.Round(time.Millisecond), float64(burst)/admitted.Seconds(), all.Round(time.Millisecond), m.HeapInuse>>20)
}
