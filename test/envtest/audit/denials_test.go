package audit

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	reportsv1alpha1 "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/nsprov/nsprov/cmd/webhook/app"
	"github.com/nsprov/nsprov/internal/audit"
	"github.com/nsprov/nsprov/test/envtest"
)

// requested is a Namespace that alice (team payments) requests.
func requested(name, tier string) *corev1.Namespace {
	a := map[string]string{"nsprov.io/team": "payments", "nsprov.io/environment": "development"}
	if tier != "" {
		a["nsprov.io/tier"] = tier
	}
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: a}}
}

func aliceClient(t *testing.T) client.Client {
	t.Helper()
	cfg, err := env.User("alice", "team-payments")
	if err != nil {
		t.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 1000, 2000
	c, err := client.New(cfg, client.Options{Scheme: envtest.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// A denied request of a non-admin reaches the report with every field and
// an Event; an allowed request and a dry-run denial do not (the dry run is in
// the decision log).
func TestDeniedRequestIsRecorded(t *testing.T) {
	ctx := context.Background()
	alice := aliceClient(t)

	// Development allows micro, small and medium: large is denied.
	if err := alice.Create(ctx, requested("rec-dry-dev", "large"), client.DryRunAll); !apierrors.IsForbidden(err) {
		t.Fatalf("dry-run create of a large tier: %v, want a denial", err)
	}
	if err := alice.Create(ctx, requested("rec-ok-dev", "small")); err != nil {
		t.Fatalf("allowed create: %v", err)
	}
	sent := time.Now()
	err := alice.Create(ctx, requested("rec-big-dev", "large"))
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "tier-not-allowed-in-environment") {
		t.Fatalf("create of a large tier: %v, want a denial", err)
	}

	ours := func(ns string) bool { return strings.HasPrefix(ns, "rec-") }
	byNS := map[string]decisionLine{}
	for _, d := range validations(t, ours) {
		byNS[d.Namespace] = d
	}
	denied, dry, allowed := byNS["rec-big-dev"], byNS["rec-dry-dev"], byNS["rec-ok-dev"]
	if denied.UID == "" || denied.Allowed || denied.User != "alice" || len(denied.Violations) != 1 || denied.DryRun {
		t.Fatalf("decision log of the denial: %+v", denied)
	}
	if dry.UID == "" || dry.Allowed || !dry.DryRun || len(dry.Violations) != 1 || dry.Violations[0].Rule != "tier-not-allowed-in-environment" {
		t.Fatalf("decision log of the dry-run denial: %+v", dry)
	}
	if allowed.UID == "" || !allowed.Allowed {
		t.Fatalf("decision log of the allowed request: %+v", allowed)
	}
	if denied.PolicyRevision != env.Policies.Bundle().Revision || denied.LatencySeconds <= 0 || denied.Time.IsZero() {
		t.Errorf("decision log lacks the revision, latency or time: %+v", denied)
	}

	var report *reportsv1alpha1.ClusterReport
	var result *reportsv1alpha1.ReportResult
	took := envtest.Eventually(t, 30*time.Second, "the denial in "+audit.DenialsReportName, func() error {
		report = getReport(ctx, t, audit.DenialsReportName)
		if report == nil {
			return fmt.Errorf("no report yet")
		}
		for i := range report.Results {
			if report.Results[i].Properties[audit.PropRequestUID] == denied.UID {
				result = &report.Results[i]
				return nil
			}
		}
		return fmt.Errorf("%d results, none for request %s", len(report.Results), denied.UID)
	})
	t.Logf("the denial was in the report %s after the request returned", took.Round(10*time.Millisecond))

	want := reportsv1alpha1.ReportResult{
		Source: audit.Source, Policy: "tier-not-allowed-in-environment", Rule: "tier-not-allowed-in-environment",
		Category: audit.CategoryAdmission, Result: "fail", Description: denied.Violations[0].Message,
		Timestamp: metav1.Timestamp{Seconds: denied.Time.Unix(), Nanos: int32(denied.Time.Nanosecond())},
		Subjects:  []corev1.ObjectReference{{APIVersion: "v1", Kind: "Namespace", Name: "rec-big-dev"}},
		Properties: map[string]string{
			audit.PropUser: "alice", audit.PropGroups: strings.Join(denied.Groups, ","), audit.PropOperation: "CREATE",
			audit.PropRequestUID: denied.UID, audit.PropTime: denied.Time.UTC().Format(time.RFC3339Nano),
			audit.PropPolicyRevision: denied.PolicyRevision,
			// The harness's webhook server verifies no client certificate.
			audit.PropClientCertificate: "unverified",
		},
	}
	if fmt.Sprintf("%+v", *result) != fmt.Sprintf("%+v", want) {
		t.Errorf("result\n%+v\nwant\n%+v", *result, want)
	}
	if !slices.Contains(denied.Groups, "team-payments") || !slices.Contains(denied.Groups, "system:authenticated") {
		t.Errorf("groups %v", denied.Groups)
	}
	if !strings.Contains(result.Description, `tier "large" is not allowed in development`) {
		t.Errorf("message %q", result.Description)
	}
	if report.Summary.Fail != len(report.Results) || report.Summary.Pass+report.Summary.Warn+report.Summary.Error+report.Summary.Skip != 0 {
		t.Errorf("summary %+v for %d results", report.Summary, len(report.Results))
	}
	if report.Source != audit.Source || report.Configuration == nil || report.Configuration.Limits.MaxResults != reportSize {
		t.Errorf("report source %q, configuration %+v", report.Source, report.Configuration)
	}
	// The dry run and the allowed request, decided before, are not in it.
	for _, r := range report.Results {
		if uid := r.Properties[audit.PropRequestUID]; uid == dry.UID || uid == allowed.UID {
			t.Errorf("the report holds request %s (%s), which must not be persisted", uid, r.Subjects[0].Name)
		}
	}

	// The Event, selected by reason on the API server.
	envtest.Eventually(t, 30*time.Second, "the NamespaceRequestDenied Event", func() error {
		evs, err := deniedEvents(ctx, admin)
		if err != nil {
			return err
		}
		for _, e := range evs {
			if e.InvolvedObject.Name == "rec-dry-dev" || e.InvolvedObject.Name == "rec-ok-dev" {
				return fmt.Errorf("an Event for %s, which was not denied for good", e.InvolvedObject.Name)
			}
		}
		for _, e := range evs {
			if e.InvolvedObject.Kind != "Namespace" || e.InvolvedObject.Name != "rec-big-dev" {
				continue
			}
			if e.Type != corev1.EventTypeWarning || e.Reason != audit.EventReason ||
				e.Message != "namespace rec-big-dev: CREATE by alice denied by tier-not-allowed-in-environment" {
				return fmt.Errorf("event %s %s %q", e.Type, e.Reason, e.Message)
			}
			if e.ReportingController != audit.EventController || e.EventTime.IsZero() {
				return fmt.Errorf("event from %q at %v", e.ReportingController, e.EventTime)
			}
			return nil
		}
		return fmt.Errorf("none of %d Events is about rec-big-dev", len(evs))
	})

	// nsprov audit prints it.
	kc, err := env.UserKubeconfig("auditor", "system:masters")
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := app.Run(ctx, []string{"audit", "--kubeconfig", writeKubeconfig(t, kc), "--user", "alice", "--namespace", "rec-big-dev"},
		strings.NewReader(""), &out, &errOut); code != 0 {
		t.Fatalf("nsprov audit exited with %d: %s", code, errOut.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "TIME") || strings.Join(strings.Fields(lines[1]), " ") !=
		denied.Time.UTC().Format(time.RFC3339)+" alice rec-big-dev tier-not-allowed-in-environment" {
		t.Errorf("nsprov audit printed:\n%s", out.String())
	}
	t.Logf("sent at %s; nsprov audit:\n%s", sent.UTC().Format(time.RFC3339), out.String())
}
