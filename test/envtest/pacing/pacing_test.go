package pacing

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/nsprov/nsprov/internal/contract"
	"github.com/nsprov/nsprov/test/envtest"
)

const (
	namespaces = 20
	maxRunning = 3
)

var env *envtest.Env

func TestMain(m *testing.M) {
	var err error
	env, err = envtest.Start(context.Background(), envtest.Options{ServerArgs: []string{
		"--max-running-workflows", fmt.Sprint(maxRunning), "--workflow-start-rate", "2", "--workflow-start-burst", "2",
	}})
	if err != nil {
		fmt.Fprintf(os.Stderr, "pacing: %v\n", err)
		os.Exit(1)
	}
	code := m.Run()
	if err := env.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "pacing: stopping the control plane: %v\n", err)
	}
	os.Exit(code)
}

// queuedGauge reads nsprov_provisioning_queued from the controller's
// registry (the server runs in this process).
func queuedGauge(t *testing.T) float64 {
	t.Helper()
	families, err := metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == "nsprov_provisioning_queued" && len(f.GetMetric()) == 1 {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatal("no nsprov_provisioning_queued metric")
	return 0
}

func TestNeverMoreThanTheBoundRunning(t *testing.T) {
	ctx := context.Background()
	cfg, err := env.User("alice", "team-payments")
	if err != nil {
		t.Fatal(err)
	}
	alice, err := client.New(cfg, client.Options{Scheme: envtest.Scheme})
	if err != nil {
		t.Fatal(err)
	}

	// Watch the Workflows from the start: the most unfinished at once.
	var (
		mu          sync.Mutex
		most        int
		sawQueued   bool
		mostWaiting float64
	)
	stop := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			list := &wfv1.WorkflowList{}
			if err := env.Client.List(ctx, list, client.InNamespace(envtest.ArgoNamespace)); err != nil {
				continue
			}
			n := 0
			for _, wf := range list.Items {
				if !wf.Status.Fulfilled() {
					n++
				}
			}
			nsList := &corev1.NamespaceList{}
			queued := false
			if err := env.Client.List(ctx, nsList); err == nil {
				for _, ns := range nsList.Items {
					for _, c := range ns.Status.Conditions {
						queued = queued || (c.Type == contract.ConditionProvisioned && c.Reason == contract.ReasonQueued)
					}
				}
			}
			g := queuedGauge(t)
			mu.Lock()
			most = max(most, n)
			sawQueued = sawQueued || queued
			mostWaiting = max(mostWaiting, g)
			mu.Unlock()
		}
	}()

	start := time.Now()
	for i := range namespaces {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
			Name:        fmt.Sprintf("pace-%02d-dev", i),
			Annotations: map[string]string{contract.TeamAnnotation: "payments", contract.EnvironmentAnnotation: "development"},
		}}
		if err := alice.Create(ctx, ns); err != nil {
			t.Fatal(err)
		}
	}
	envtest.Eventually(t, 15*time.Minute, "every namespace provisioned", func() error {
		for i := range namespaces {
			ns := &corev1.Namespace{}
			if err := env.Client.Get(ctx, client.ObjectKey{Name: fmt.Sprintf("pace-%02d-dev", i)}, ns); err != nil {
				return err
			}
			if ns.Annotations[contract.ProvisioningAnnotation] != contract.ProvisioningSucceeded {
				return fmt.Errorf("%s: provisioning %q", ns.Name, ns.Annotations[contract.ProvisioningAnnotation])
			}
		}
		return nil
	})
	close(stop)
	<-watched
	t.Logf("%d namespaces provisioned in %s with at most %d Workflows unfinished at once (bound %d), at most %g namespaces queued",
		namespaces, time.Since(start).Round(time.Second), most, maxRunning, mostWaiting)
	if most > maxRunning {
		t.Errorf("%d Workflows unfinished at once, bound %d", most, maxRunning)
	}
	if most == 0 || !sawQueued || mostWaiting == 0 {
		t.Errorf("the bound was never reached: at most %d running, Queued seen %v, queued gauge at most %g", most, sawQueued, mostWaiting)
	}
	if g := queuedGauge(t); g != 0 {
		t.Errorf("nsprov_provisioning_queued = %g once every namespace is provisioned, want 0", g)
	}
}
