package chart

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/nsprov/nsprov/internal/certs"
	"github.com/nsprov/nsprov/test/envtest"
	"github.com/nsprov/nsprov/test/envtest/chartrender"
	"github.com/nsprov/nsprov/test/envtest/cluster"
)

// TestSelfManagedCertificates installs the chart with self-managed
// certificates and runs two replicas of `nsprov serve` with the chart's
// arguments, as nsprov's service account with only the chart's RBAC. The CA
// bundle is injected into both webhook configurations; with lifetimes forced
// short, the certificate and the CA renew several times while the API server
// keeps calling the webhooks, and both replicas serve each renewal without a
// restart. A requested namespace is then provisioned end to end: the
// controller creates its Workflow and the steps run as the provisioner's
// service account, again with only the chart's RBAC.
func TestSelfManagedCertificates(t *testing.T) {
	ctx := context.Background()
	values, err := chartrender.ValuesFile(filepath.Join(chartrender.ChartDir(), "ci", "self-managed-values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	objs := render(t, values)
	install(ctx, t, objs, false)
	args := deploymentArgs(t, objs)
	// The certificate lives 9s and the CA 18s: renewals at about 6s and 12s.
	short := []string{"--cert-namespace", releaseNamespace, "--cert-hosts", "127.0.0.1",
		"--cert-validity", "9s", "--ca-validity", "18s", "--cert-check-interval", "500ms"}

	a := startReplica(t, args, short...)
	// A second replica (no controller: one per process is all
	// controller-runtime allows) shares the Secret.
	b := startReplica(t, args, append(short, "--controller=false")...)
	pointWebhooksAt(ctx, t, objs, a.webhook)

	envtest.Eventually(t, time.Minute, "the CA bundle injected into both webhook configurations", func() error {
		_, bundle := secretMaterial(ctx, t)
		m := &admissionregistrationv1.MutatingWebhookConfiguration{}
		v := &admissionregistrationv1.ValidatingWebhookConfiguration{}
		for _, obj := range []client.Object{m, v} {
			if err := admin.Get(ctx, client.ObjectKey{Name: "nsprov"}, obj); err != nil {
				return err
			}
		}
		if !bytes.Equal(m.Webhooks[0].ClientConfig.CABundle, bundle) || !bytes.Equal(v.Webhooks[0].ClientConfig.CABundle, bundle) {
			return fmt.Errorf("the webhook configurations do not hold the Secret's ca.crt")
		}
		return nil
	})

	bob := newClient(t, user(t, "bob", "team-web"))
	alice := newClient(t, user(t, "alice", "team-payments"))
	leaves, cas := map[string]bool{}, map[string]bool{}
	for i := 0; len(leaves) < 4 || len(cas) < 2; i++ {
		if i > 600 {
			t.Fatalf("saw %d certificates and %d CAs in %d rounds; want renewals of both", len(leaves), len(cas), i)
		}
		leaf, _ := secretMaterial(ctx, t)
		leaves[leaf.SerialNumber.String()] = true
		cas[string(leaf.AuthorityKeyId)] = true
		// Every request across the renewals reaches nsprov and is answered.
		if err := checkWebhooksAnswer(ctx, bob, alice, fmt.Sprintf("rotation%d-dev", i)); err != nil {
			t.Fatalf("round %d (certificate %v): %v\nreplica log:\n%s", i, leaf.SerialNumber, err, a.log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("the API server reached nsprov across %d certificates from %d CAs", len(leaves), len(cas))

	// Both replicas serve the Secret's certificate, with the expiry metric.
	for name, r := range map[string]*replica{"a": a, "b": b} {
		envtest.Eventually(t, time.Minute, "replica "+name+" serving the Secret's certificate", func() error {
			leaf, bundle := secretMaterial(ctx, t)
			got, err := served(r.webhook, bundle)
			if err != nil {
				return err
			}
			if !got.Equal(leaf) {
				return fmt.Errorf("serves serial %v, the Secret holds %v", got.SerialNumber, leaf.SerialNumber)
			}
			v, err := metricValue(r.metrics, certs.ExpiryMetricName)
			if err != nil {
				return err
			}
			if int64(v) != leaf.NotAfter.Unix() {
				return fmt.Errorf("%s = %v, want %d", certs.ExpiryMetricName, v, leaf.NotAfter.Unix())
			}
			return nil
		})
	}

	provisionEndToEnd(ctx, t, alice)

	// Every metric the chart's alerts and dashboard query is served.
	exported := scrape(t, a.metrics)
	for _, name := range queriedMetrics(t) {
		// Counted only once a record is dropped, which this test never causes.
		if name == "nsprov_audit_records_dropped_total" {
			continue
		}
		if !strings.Contains(exported, "# TYPE "+name+" ") {
			t.Errorf("the alerts or the dashboard query %s, which nsprov serve does not export", name)
		}
	}

	// The chart's RBAC was enough for everything the replicas did.
	for name, r := range map[string]*replica{"a": a, "b": b} {
		if lines := envtest.GrepLines(r.log.String(), "forbidden"); lines != "" {
			t.Errorf("replica %s was refused by RBAC:\n%s", name, lines)
		}
	}
}

// startArgo runs Argo's own workflow-controller, and a process kubelet that
// runs its step pods with argoexec as the provisioner's service account,
// until the caller stops it.
func startArgo(ctx context.Context, t *testing.T) *cluster.Cluster {
	t.Helper()
	assets, err := envtest.AssetsDir()
	if err != nil {
		t.Fatal(err)
	}
	argoAssets, err := envtest.ArgoAssetsDir()
	if err != nil {
		t.Fatal(err)
	}
	argo, err := cluster.Start(ctx, cluster.Options{
		ControlPlane: controlPlane, K8sAssets: assets, ArgoAssets: argoAssets, ArgoNamespace: "argo",
	})
	if err != nil {
		t.Fatal(err)
	}
	return argo
}

// provisionEndToEnd: alice's namespace gets its Workflow from the running
// controller, and the Workflow's steps, run as the provisioner with the
// chart's RBAC only, provision it.
func provisionEndToEnd(ctx context.Context, t *testing.T, alice client.Client) {
	t.Helper()
	argo := startArgo(ctx, t)
	defer argo.Stop()

	ns := requested("chart-e2e-dev")
	if err := alice.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	envtest.Eventually(t, 3*time.Minute, "the namespace provisioned", func() error {
		got := &corev1.Namespace{}
		if err := admin.Get(ctx, client.ObjectKeyFromObject(ns), got); err != nil {
			return err
		}
		for _, c := range got.Status.Conditions {
			if c.Type == "Provisioned" && c.Status == corev1.ConditionTrue {
				return nil
			}
		}
		return fmt.Errorf("not Provisioned: conditions %+v, annotations %v", got.Status.Conditions, got.Annotations)
	})
	if err := admin.Get(ctx, client.ObjectKey{Namespace: ns.Name, Name: "nsprov-quota"}, &corev1.ResourceQuota{}); err != nil {
		t.Errorf("the provisioner applied no ResourceQuota: %v", err)
	}
}
