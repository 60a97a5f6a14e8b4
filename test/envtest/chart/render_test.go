package chart

import (
	"reflect"
	"slices"
	"testing"

	"github.com/spf13/pflag"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"

	"github.com/nsprov/nsprov/cmd/webhook/app"
	"github.com/nsprov/nsprov/internal/admission"
	"github.com/nsprov/nsprov/internal/server"
	"github.com/nsprov/nsprov/test/envtest/chartrender"
)

func convert(t *testing.T, u *unstructured.Unstructured, into any) {
	t.Helper()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(u.Object, into, true); err != nil {
		t.Fatalf("%s %s: %v", u.GetKind(), u.GetName(), err)
	}
}

// relevant is the start of the webhooks' match condition: the object, or the
// old object, carries an nsprov.io/ annotation or label.
const relevant = `(has(object.metadata.annotations) && object.metadata.annotations.exists(k, k.startsWith('nsprov.io/'))) || ` +
	`(has(object.metadata.labels) && object.metadata.labels.exists(k, k.startsWith('nsprov.io/'))) || ` +
	`(oldObject != null && ((has(oldObject.metadata.annotations) && oldObject.metadata.annotations.exists(k, k.startsWith('nsprov.io/'))) || ` +
	`(has(oldObject.metadata.labels) && oldObject.metadata.labels.exists(k, k.startsWith('nsprov.io/'))))) || `

// notTerminating and metadataChanges are the webhooks' other match
// conditions: nsprov never sees an update of a namespace being deleted, nor
// an update that changes neither labels nor annotations (a finalizer patch).
const (
	notTerminating  = `request.operation != 'UPDATE' || !has(object.metadata.deletionTimestamp)`
	metadataChanges = `request.operation != 'UPDATE' || ` +
		`(has(object.metadata.labels) ? object.metadata.labels : {}) != (has(oldObject.metadata.labels) ? oldObject.metadata.labels : {}) || ` +
		`(has(object.metadata.annotations) ? object.metadata.annotations : {}) != (has(oldObject.metadata.annotations) ? oldObject.metadata.annotations : {})`
)

// TestWebhookConfigurations: the chart's webhook configurations, the only
// copy there is (the envtest harness installs them too), route CREATE and
// UPDATE of namespaces to nsprov's two paths, with the timeout and
// exemptions of the values. They are rendered with failurePolicy Ignore, and
// the post-install/post-upgrade hook nsprov-activate sets the value's once a
// replica answers (TestHooks). The envtest suites run the match condition
// for real.
func TestWebhookConfigurations(t *testing.T) {
	tests := []struct {
		name      string
		values    map[string]any
		failure   admissionregistrationv1.FailurePolicyType
		timeout   int32
		exemption string // the match condition after relevant
	}{
		{"defaults", nil, admissionregistrationv1.Fail, 5,
			`(request.operation == 'CREATE' && !(request.userInfo.username in []) && ` +
				`!(has(request.userInfo.groups) && request.userInfo.groups.exists(g, g in ["system:masters", "platform-admins", "system:serviceaccounts:kube-system"])))`},
		{"Ignore, 3s, other exemptions", map[string]any{"webhook": map[string]any{
			"failurePolicy": "Ignore", "timeoutSeconds": 3,
			"exemptGroups": []any{"ops", `quote"d`}, "exemptUsers": []any{"ci-bot"},
		}}, admissionregistrationv1.Ignore, 3,
			`(request.operation == 'CREATE' && !(request.userInfo.username in ["ci-bot"]) && ` +
				`!(has(request.userInfo.groups) && request.userInfo.groups.exists(g, g in ["ops", "quote\"d"])))`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := chartrender.RenderAll(tc.values, releaseNamespace)
			if err != nil {
				t.Fatal(err)
			}
			objs := r.Objects
			for _, kind := range []string{"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"} {
				if got := find(t, objs, kind, "nsprov").GetAnnotations()["nsprov.io/failure-policy"]; got != string(tc.failure) {
					t.Errorf("%s annotation nsprov.io/failure-policy = %q, want %s", kind, got, tc.failure)
				}
			}
			if args := jobArgs(t, r.Hooks, "nsprov-activate"); !slices.Contains(args, "--failure-policy="+string(tc.failure)) {
				t.Errorf("nsprov-activate runs %q, want --failure-policy=%s", args, tc.failure)
			}
			var gotM admissionregistrationv1.MutatingWebhookConfiguration
			var gotV admissionregistrationv1.ValidatingWebhookConfiguration
			convert(t, find(t, objs, "MutatingWebhookConfiguration", "nsprov"), &gotM)
			convert(t, find(t, objs, "ValidatingWebhookConfiguration", "nsprov"), &gotV)
			if len(gotM.Webhooks) != 1 || len(gotV.Webhooks) != 1 {
				t.Fatalf("want one webhook in each configuration, got %d and %d", len(gotM.Webhooks), len(gotV.Webhooks))
			}
			for _, sel := range []**metav1.LabelSelector{&gotM.Webhooks[0].NamespaceSelector, &gotV.Webhooks[0].NamespaceSelector} {
				checkExemptNamespaces(t, *sel)
				*sel = nil
			}

			client := func(path string) admissionregistrationv1.WebhookClientConfig {
				return admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{
					Namespace: releaseNamespace, Name: "nsprov", Path: ptr.To(path), Port: ptr.To[int32](443),
				}}
			}
			rules := []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
				Rule: admissionregistrationv1.Rule{
					APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"namespaces"},
					Scope: ptr.To(admissionregistrationv1.ClusterScope),
				},
			}}
			match := []admissionregistrationv1.MatchCondition{
				{Name: "nsprov-relevant", Expression: relevant + tc.exemption},
				{Name: "nsprov-not-terminating", Expression: notTerminating},
				{Name: "nsprov-metadata-changes", Expression: metadataChanges},
			}
			wantM := []admissionregistrationv1.MutatingWebhook{{
				Name:                    admission.MutatingWebhookName,
				ClientConfig:            client(admission.MutatePath),
				Rules:                   rules,
				FailurePolicy:           ptr.To(admissionregistrationv1.Ignore),
				MatchPolicy:             ptr.To(admissionregistrationv1.Equivalent),
				SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNoneOnDryRun),
				TimeoutSeconds:          ptr.To(tc.timeout),
				AdmissionReviewVersions: []string{"v1"},
				ReinvocationPolicy:      ptr.To(admissionregistrationv1.NeverReinvocationPolicy),
				MatchConditions:         match,
			}}
			wantV := []admissionregistrationv1.ValidatingWebhook{{
				Name:                    admission.ValidatingWebhookName,
				ClientConfig:            client(admission.ValidatePath),
				Rules:                   rules,
				FailurePolicy:           ptr.To(admissionregistrationv1.Ignore),
				MatchPolicy:             ptr.To(admissionregistrationv1.Equivalent),
				SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNoneOnDryRun),
				TimeoutSeconds:          ptr.To(tc.timeout),
				AdmissionReviewVersions: []string{"v1"},
				MatchConditions:         match,
			}}
			if !reflect.DeepEqual(gotM.Webhooks, wantM) {
				t.Errorf("mutating webhook:\nchart: %+v\nwant:  %+v", gotM.Webhooks[0], wantM[0])
			}
			if !reflect.DeepEqual(gotV.Webhooks, wantV) {
				t.Errorf("validating webhook:\nchart: %+v\nwant:  %+v", gotV.Webhooks[0], wantV[0])
			}
		})
	}
}

func checkExemptNamespaces(t *testing.T, sel *metav1.LabelSelector) {
	t.Helper()
	if sel == nil || len(sel.MatchExpressions) != 1 {
		t.Fatalf("namespaceSelector = %+v, want one expression on kubernetes.io/metadata.name", sel)
	}
	e := sel.MatchExpressions[0]
	want := []string{"kube-system", "kube-public", "kube-node-lease", "default", releaseNamespace, "argo"}
	if e.Key != "kubernetes.io/metadata.name" || e.Operator != "NotIn" || !reflect.DeepEqual(e.Values, want) {
		t.Errorf("namespaceSelector expression = %+v, want NotIn %v", e, want)
	}
}

// TestDeployment: the restricted pod security profile, probes, replicas
// and spreading, and arguments that `nsprov serve` accepts in every value
// set, so the chart and the flags cannot drift.
func TestDeployment(t *testing.T) {
	for name, values := range valueSets(t) {
		t.Run(name, func(t *testing.T) {
			var d appsv1.Deployment
			convert(t, find(t, render(t, values), "Deployment", "nsprov"), &d)
			if *d.Spec.Replicas < 2 {
				t.Errorf("replicas = %d, want at least 2", *d.Spec.Replicas)
			}
			pod := d.Spec.Template.Spec
			if pod.Affinity == nil || pod.Affinity.PodAntiAffinity == nil {
				t.Error("no pod anti-affinity")
			}
			if pod.ServiceAccountName != "nsprov" {
				t.Errorf("service account %q, want nsprov (the policy's manager_users name it)", pod.ServiceAccountName)
			}
			if psc := pod.SecurityContext; psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot ||
				psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("pod security context %+v is not restricted", psc)
			}
			c := pod.Containers[0]
			sc := c.SecurityContext
			if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
				sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
				sc.Capabilities == nil || !reflect.DeepEqual(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
				t.Errorf("container security context %+v is not restricted", sc)
			}
			if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" || c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
				t.Error("liveness and readiness probes must check /healthz and /readyz")
			}
			if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
				t.Error("no resource requests and limits")
			}
			if len(c.Args) == 0 || c.Args[0] != "serve" {
				t.Fatalf("args %v do not run nsprov serve", c.Args)
			}
			opts := &app.ServeOptions{}
			fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
			opts.AddFlags(fs)
			if err := fs.Parse(c.Args[1:]); err != nil {
				t.Fatalf("nsprov serve refuses the chart's arguments %v: %v", c.Args[1:], err)
			}
			if opts.Controller.Identity != "system:serviceaccount:"+releaseNamespace+":nsprov" {
				t.Errorf("--identity %q is not the pod's service account", opts.Controller.Identity)
			}
			evaluator := "compiled"
			if p, ok := values["policy"].(map[string]any); ok {
				if e, ok := p["evaluator"].(string); ok {
					evaluator = e
				}
			}
			for flag, want := range map[string]string{"audit-report-size": "1000", "audit-interval": "10m0s", "decision-log": "stdout", "policy-evaluator": evaluator} {
				if f := fs.Lookup(flag); f == nil || f.Value.String() != want || !f.Changed {
					t.Errorf("--%s: the chart must pass the value's default %s (flag %+v)", flag, want, f)
				}
			}
			wantMode := server.CertModeSelfManaged
			if cm, _ := values["certManager"].(map[string]any); cm != nil && cm["enabled"] == true {
				wantMode = server.CertModeFiles
			}
			if opts.Webhook.Certs.Mode != wantMode {
				t.Errorf("--cert-mode %q, want %q", opts.Webhook.Certs.Mode, wantMode)
			}
		})
	}
}

// TestCertManagerMode: an Issuer and Certificate, and the CA injection
// annotation on both webhook configurations; no Secret permissions for nsprov.
func TestCertManagerMode(t *testing.T) {
	objs := render(t, map[string]any{"certManager": map[string]any{"enabled": true}})
	cert := find(t, objs, "Certificate", "nsprov-webhook")
	dns, _, _ := unstructured.NestedStringSlice(cert.Object, "spec", "dnsNames")
	if !reflect.DeepEqual(dns, []string{"nsprov.nsprov-system.svc", "nsprov.nsprov-system.svc.cluster.local"}) {
		t.Errorf("certificate DNS names %v", dns)
	}
	find(t, objs, "Issuer", "nsprov-ca")
	for _, kind := range []string{"MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"} {
		if got := find(t, objs, kind, "nsprov").GetAnnotations()["cert-manager.io/inject-ca-from"]; got != "nsprov-system/nsprov-webhook" {
			t.Errorf("%s cert-manager.io/inject-ca-from = %q", kind, got)
		}
	}
	for _, o := range objs {
		if o.GetKind() != "Role" && o.GetKind() != "ClusterRole" {
			continue
		}
		if o.GetName() == "nsprov-hooks" {
			// The hook Jobs' service account activates and removes the two
			// webhook configurations in either mode (TestHooks,
			// TestInstallAnywhere), by name only.
			rules, _, _ := unstructured.NestedSlice(o.Object, "rules")
			for _, r := range rules {
				res, _, _ := unstructured.NestedStringSlice(r.(map[string]any), "resources")
				names, _, _ := unstructured.NestedStringSlice(r.(map[string]any), "resourceNames")
				if slices.Contains(res, "secrets") || (slices.Contains(res, "mutatingwebhookconfigurations") && !slices.Equal(names, []string{"nsprov"})) {
					t.Errorf("ClusterRole nsprov-hooks grants %v %v, want nsprov's own webhook configurations only", res, names)
				}
			}
			continue
		}
		rules, _, _ := unstructured.NestedSlice(o.Object, "rules")
		for _, r := range rules {
			res, _, _ := unstructured.NestedStringSlice(r.(map[string]any), "resources")
			if slices.Contains(res, "secrets") || slices.Contains(res, "mutatingwebhookconfigurations") {
				t.Errorf("with cert-manager, %s %s must not grant %v", o.GetKind(), o.GetName(), res)
			}
		}
	}

	named := render(t, map[string]any{"certManager": map[string]any{"enabled": true, "issuerRef": map[string]any{"name": "corp", "kind": "ClusterIssuer"}}})
	for _, o := range named {
		if o.GetKind() == "Issuer" {
			t.Errorf("a named issuer must not create Issuer %s", o.GetName())
		}
	}
	ref, _, _ := unstructured.NestedStringMap(find(t, named, "Certificate", "nsprov-webhook").Object, "spec", "issuerRef")
	if ref["name"] != "corp" || ref["kind"] != "ClusterIssuer" {
		t.Errorf("issuerRef %v, want ClusterIssuer corp", ref)
	}
}
