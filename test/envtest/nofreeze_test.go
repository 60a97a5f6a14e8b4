package envtest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/nsprov/nsprov/internal/contract"
)

// tightenStaging removes the large tier from the staging environment in the
// suite's policy directory, as an admin editing the policy live would, waits
// until the webhooks serve the edited policy, and puts the original back when
// the test ends.
func tightenStaging(t *testing.T) {
	t.Helper()
	path := filepath.Join(policyDir, "config", "environments.yaml")
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const before = "  staging:\n    name_suffix: -staging\n    default_tier: medium\n    allowed_tiers: [small, medium, large]\n"
	const after = "  staging:\n    name_suffix: -staging\n    default_tier: medium\n    allowed_tiers: [small, medium]\n"
	if !strings.Contains(string(orig), before) {
		t.Fatalf("environments.yaml has no staging block allowing large:\n%s", orig)
	}
	revision := env.Policies.Bundle().Revision
	if err := writeAtomic(path, []byte(strings.Replace(string(orig), before, after, 1))); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := writeAtomic(path, orig); err != nil {
			t.Error(err)
		}
		Eventually(t, 30*time.Second, "the original policy back in force", func() error {
			if env.Policies.Bundle().Revision == revision {
				return nil
			}
			return fmt.Errorf("policy revision %s, want %s", env.Policies.Bundle().Revision, revision)
		})
	})
	Eventually(t, 30*time.Second, "the tightened policy in force", func() error {
		if env.Policies.Bundle().Revision == revision {
			return fmt.Errorf("policy revision still %s", revision)
		}
		return nil
	})
}

// waitGone waits until the namespace no longer exists.
func waitGone(t *testing.T, c client.Client, name string, timeout time.Duration) {
	t.Helper()
	Eventually(t, timeout, "namespace "+name+" deleted", func() error {
		ns := &corev1.Namespace{}
		err := c.Get(context.Background(), client.ObjectKey{Name: name}, ns)
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		return fmt.Errorf("still there: phase %s, finalizers %v %v, conditions %v", ns.Status.Phase, ns.Finalizers, ns.Spec.Finalizers, ns.Status.Conditions)
	})
}

// TestPolicyChangeFreezesNoNamespace runs alone (not parallel), since it
// tightens the policy every other test reads: after an admin removes a tier
// from an environment, the namespaces already using it are reported by the
// audit, not frozen. A third party still labels them, and a foreground
// deletion (whose last step is the garbage collector's finalizer patch)
// completes.
func TestPolicyChangeFreezesNoNamespace(t *testing.T) {
	ctx := context.Background()
	alice := newUser(t, "alice", "team-payments")
	for _, name := range []string{"nofreeze-label-staging", "nofreeze-fg-staging"} {
		if err := alice.client.Create(ctx, request(name, "payments", "staging", map[string]string{tierKey: "large"})); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"nofreeze-label-staging", "nofreeze-fg-staging"} {
		waitCondition(t, name, corev1.ConditionTrue, contract.ReasonSucceeded)
	}

	tightenStaging(t)
	// The tightened policy is in force: a new request for the tier is denied.
	err := alice.client.Create(ctx, request("nofreeze-new-staging", "payments", "staging", map[string]string{tierKey: "large"}))
	wantDenied(t, err, "tier-not-allowed-in-environment")

	// (a) A third party labels an existing namespace: a controller of its own
	// (exempt identity) and a cluster admin.
	labeler := newUser(t, "system:serviceaccount:kube-system:labeler", "system:serviceaccounts", "system:serviceaccounts:kube-system")
	for i, u := range []*user{labeler, {name: "admin", client: env.Client}} {
		err := u.update(ctx, "nofreeze-label-staging", func(ns *corev1.Namespace) {
			if ns.Labels == nil {
				ns.Labels = map[string]string{}
			}
			ns.Labels["example.com/cost-center"] = fmt.Sprint(40 + i)
		})
		if err != nil {
			t.Errorf("label update by %s of a namespace the tightened policy no longer allows: %v", u.name, err)
		}
	}
	// The requester may still change what she wrote: back to an allowed tier.
	if err := alice.update(ctx, "nofreeze-label-staging", func(ns *corev1.Namespace) { ns.Annotations[tierKey] = "medium" }); err != nil {
		t.Errorf("moving to an allowed tier: %v", err)
	}
	// A change of the request annotations is checked against the new policy.
	err = alice.update(ctx, "nofreeze-label-staging", func(ns *corev1.Namespace) { ns.Annotations[tierKey] = "large" })
	wantDenied(t, err, "tier-not-allowed-in-environment")

	// (b) A foreground deletion: the garbage collector deletes the Workflow
	// the namespace owns, then removes its foregroundDeletion finalizer.
	ns := get(t, "nofreeze-fg-staging")
	if err := env.Client.Delete(ctx, ns, client.PropagationPolicy("Foreground")); err != nil {
		t.Fatal(err)
	}
	waitGone(t, env.Client, "nofreeze-fg-staging", 2*time.Minute)
}

// manyFeatures is a features list of n distinct entries.
func manyFeatures(n int) string {
	f := make([]string, n)
	for i := range f {
		f[i] = fmt.Sprintf("f%d", i)
	}
	return strings.Join(f, ",")
}
