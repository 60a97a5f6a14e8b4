package nofreeze

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/nsprov/nsprov/internal/contract"
	"github.com/nsprov/nsprov/test/envtest"
)

var env *envtest.Env

func TestMain(m *testing.M) {
	var err error
	env, err = envtest.Start(context.Background(), envtest.Options{})
	if err != nil {
		fmt.Fprintf(os.Stderr, "envtest: %v\n", err)
		os.Exit(1)
	}
	code := m.Run()
	if err := env.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "envtest: stopping the control plane: %v\n", err)
	}
	os.Exit(code)
}

// provisioned waits until the namespace's Provisioned condition is True.
func provisioned(t *testing.T, name string) {
	t.Helper()
	envtest.Eventually(t, 3*time.Minute, "namespace "+name+" provisioned", func() error {
		ns := &corev1.Namespace{}
		if err := env.Client.Get(context.Background(), client.ObjectKey{Name: name}, ns); err != nil {
			return err
		}
		for _, c := range ns.Status.Conditions {
			if c.Type == contract.ConditionProvisioned && c.Status == corev1.ConditionTrue {
				return nil
			}
		}
		return fmt.Errorf("conditions %v", ns.Status.Conditions)
	})
}

// TestDeleteWhileNsprovIsDown deletes provisioned namespaces, in the
// foreground and in the background, while nsprov's webhook server is
// stopped: both deletions complete.
func TestDeleteWhileNsprovIsDown(t *testing.T) {
	ctx := context.Background()
	cfg, err := env.User("alice", "team-payments")
	if err != nil {
		t.Fatal(err)
	}
	alice, err := client.New(cfg, client.Options{Scheme: envtest.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]metav1.DeletionPropagation{
		"down-fg-dev": metav1.DeletePropagationForeground,
		"down-bg-dev": metav1.DeletePropagationBackground,
	}
	for name := range cases {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{
			contract.TeamAnnotation: "payments", contract.EnvironmentAnnotation: "development",
		}}}
		if err := alice.Create(ctx, ns); err != nil {
			t.Fatal(err)
		}
	}
	for name := range cases {
		provisioned(t, name)
	}

	env.StopServer()
	// nsprov is down: an update it must see (a tier change, on dry-run)
	// fails to reach it (failurePolicy Fail), so the outage is real.
	envtest.Eventually(t, time.Minute, "nsprov's webhooks unreachable", func() error {
		ns := &corev1.Namespace{}
		if err := env.Client.Get(ctx, client.ObjectKey{Name: "down-fg-dev"}, ns); err != nil {
			return err
		}
		ns.Annotations[contract.TierAnnotation] = "micro"
		err := alice.Update(ctx, ns, client.DryRunAll)
		if err != nil && strings.Contains(err.Error(), "failed calling webhook") {
			return nil
		}
		return fmt.Errorf("a tier change while nsprov is stopped: %v, want the API server's failure to call the webhook", err)
	})

	for name, propagation := range cases {
		ns := &corev1.Namespace{}
		if err := env.Client.Get(ctx, client.ObjectKey{Name: name}, ns); err != nil {
			t.Fatal(err)
		}
		if err := env.Client.Delete(ctx, ns, client.PropagationPolicy(propagation)); err != nil {
			t.Fatalf("deleting %s (%s): %v", name, propagation, err)
		}
	}
	for name, propagation := range cases {
		envtest.Eventually(t, 2*time.Minute, fmt.Sprintf("namespace %s deleted (%s)", name, propagation), func() error {
			ns := &corev1.Namespace{}
			err := env.Client.Get(ctx, client.ObjectKey{Name: name}, ns)
			if apierrors.IsNotFound(err) {
				return nil
			}
			if err != nil {
				return err
			}
			return fmt.Errorf("still there: phase %s, finalizers %v %v, conditions %v", ns.Status.Phase, ns.Finalizers, ns.Spec.Finalizers, ns.Status.Conditions)
		})
	}
}
