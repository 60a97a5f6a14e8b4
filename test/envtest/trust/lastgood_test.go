package trust

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/nsprov/nsprov/internal/server"
	"github.com/nsprov/nsprov/policies"
	"github.com/nsprov/nsprov/test/envtest"
)

// TestRestartWithBrokenPolicy: a replica that starts while the policy
// directory (the mounted ConfigMap) is broken serves the last bundle that
// loaded, saved in the cluster by the replica that loaded it; it reports the
// broken one and loads the fixed one. Without a last good bundle it does not
// start: it never falls back to the embedded, more permissive policy.
func TestRestartWithBrokenPolicy(t *testing.T) {
	ctx := context.Background()
	t.Setenv("POD_NAMESPACE", releaseNamespace)
	t.Setenv("POD_NAME", "nsprov-a")
	t.Setenv("POD_UID", "uid-a")
	policyDir := t.TempDir()
	if err := policies.Export(policyDir); err != nil {
		t.Fatal(err)
	}
	// The admin's policy is stricter than the embedded one: development
	// namespaces cannot be micro.
	setDevelopmentTiers(t, policyDir, "[small, medium]")
	alice := userClient(t, "alice", "team-payments")
	denied := func(name, tier, rule string) error {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: map[string]string{
			"nsprov.io/team": "payments", "nsprov.io/environment": "development", "nsprov.io/tier": tier,
		}}}
		err := alice.Create(ctx, ns)
		if err == nil {
			_ = admin.Delete(ctx, ns)
			return fmt.Errorf("namespace %s (tier %s) was admitted, want a denial by %s", name, tier, rule)
		}
		if !strings.Contains(err.Error(), rule+": ") {
			return fmt.Errorf("creating namespace %s (tier %s): %v, want a denial by %s", name, tier, err, rule)
		}
		return nil
	}

	a := startReplica(t, policyDir)
	a.waitReady(t)
	if err := denied("lg-micro-dev", "micro", "tier-not-allowed-in-environment"); err != nil {
		t.Fatal(err)
	}
	good := waitForLastGood(t, "")
	t.Logf("last good bundle saved: revision %s", good)

	// Break the policy; the running replica rejects it.
	broken := filepath.Join(policyDir, "broken.rego")
	if err := os.WriteFile(broken, []byte("package nsprov.validation\n\ndeny contains v if {\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	envtest.Eventually(t, 30*time.Second, "the running replica rejecting the broken policy", func() error {
		if !strings.Contains(a.log.String(), "the changed policy does not load") {
			return fmt.Errorf("not in its log yet")
		}
		return nil
	})

	// Restart: the new replica serves the last good bundle.
	a.stop(t)
	t.Setenv("POD_NAME", "nsprov-b")
	t.Setenv("POD_UID", "uid-b")
	b := startReplica(t, policyDir)
	b.waitReady(t)
	if err := denied("lg-micro-dev", "micro", "tier-not-allowed-in-environment"); err != nil {
		t.Fatalf("after a restart on a broken policy: %v", err)
	}
	if !strings.Contains(b.log.String(), good) || !strings.Contains(b.log.String(), "last good") {
		t.Errorf("the log does not say the replica serves the last good bundle %s:\n%s", good, envtest.GrepLines(b.log.String(), "policy"))
	}
	envtest.Eventually(t, 30*time.Second, "a "+server.ReasonPolicyReloadFailed+" Event on the restarted pod", func() error {
		return podEvent(ctx, "nsprov-b", server.ReasonPolicyReloadFailed, "broken.rego")
	})

	// Fix the policy, stricter still: the replica loads it and saves it.
	if err := os.Remove(broken); err != nil {
		t.Fatal(err)
	}
	setDevelopmentTiers(t, policyDir, "[medium]")
	envtest.Eventually(t, 30*time.Second, "the fixed policy serving", func() error {
		return denied("lg-small-dev", "small", "tier-not-allowed-in-environment")
	})
	fixed := waitForLastGood(t, good)
	t.Logf("fixed bundle saved: revision %s", fixed)

	// Broken again, and no last good bundle: a new replica does not start,
	// rather than serve the embedded policy, which admits micro namespaces.
	if err := os.WriteFile(broken, []byte("package nsprov.validation\n\ndeny contains v if {\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	envtest.Eventually(t, 30*time.Second, "the running replica rejecting the broken policy", func() error {
		if strings.Count(b.log.String(), "the changed policy does not load") == 0 {
			return fmt.Errorf("not in its log yet")
		}
		return nil
	})
	b.stop(t)
	if err := admin.Delete(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: releaseNamespace, Name: "nsprov-policy-last-good"}}); err != nil {
		t.Fatal(err)
	}
	c := startReplica(t, policyDir)
	select {
	case code := <-c.exited:
		c.exited <- code
		if code == 0 || !strings.Contains(c.log.String(), "broken.rego") || !strings.Contains(c.log.String(), "no last good") {
			t.Errorf("serve exited with %d, want a failure that names broken.rego and says there is no last good bundle:\n%s", code, c.log.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("serve started on a broken policy without a last good bundle:\n%s", c.log.String())
	}
}

// setDevelopmentTiers sets the allowed tiers of the development environment
// in the policy data of dir.
func setDevelopmentTiers(t *testing.T, dir, tiers string) {
	t.Helper()
	path := filepath.Join(dir, "config", "environments.yaml")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	inDev := false
	for i, l := range lines {
		switch {
		case strings.HasPrefix(l, "  development:"):
			inDev = true
		case strings.HasPrefix(l, "  ") && !strings.HasPrefix(l, "    "):
			inDev = false
		case inDev && strings.HasPrefix(strings.TrimSpace(l), "allowed_tiers:"):
			lines[i] = "    allowed_tiers: " + tiers
		}
	}
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
}

// waitForLastGood waits until the last good ConfigMap holds a revision other
// than not, and returns it.
func waitForLastGood(t *testing.T, not string) string {
	t.Helper()
	var rev string
	envtest.Eventually(t, 30*time.Second, "the last good bundle saved in the cluster", func() error {
		cm := &corev1.ConfigMap{}
		if err := admin.Get(context.Background(), client.ObjectKey{Namespace: releaseNamespace, Name: "nsprov-policy-last-good"}, cm); err != nil {
			return err
		}
		rev = cm.Annotations["nsprov.io/policy-revision"]
		if rev == "" || rev == not {
			return fmt.Errorf("revision %q", rev)
		}
		return nil
	})
	return rev
}

// podEvent finds an Event with reason about pod whose note contains text.
func podEvent(ctx context.Context, pod, reason, text string) error {
	var list eventsv1.EventList
	if err := admin.List(ctx, &list, client.InNamespace(releaseNamespace)); err != nil {
		return err
	}
	for _, e := range list.Items {
		if e.Regarding.Name == pod && e.Reason == reason && strings.Contains(e.Note, text) {
			return nil
		}
	}
	return fmt.Errorf("no %s Event about pod %s among %d Events", reason, pod, len(list.Items))
}
