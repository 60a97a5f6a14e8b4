package chart

import (
	"slices"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/nsprov/nsprov/cmd/webhook/app"
	"github.com/nsprov/nsprov/internal/server"
	"github.com/nsprov/nsprov/test/envtest/chartrender"
)

// TestRenderTrust: webhook.clientCA mounts the CA and passes
// --client-ca-file; networkPolicy.apiServerCIDRs and webhookFrom are the
// only sources of the webhook port; policy.lastGood passes
// --policy-last-good and grants the ConfigMap, and turning it off removes
// both.
func TestRenderTrust(t *testing.T) {
	values := map[string]any{
		"webhook": map[string]any{"clientCA": map[string]any{"enabled": true, "secretName": "apiserver-webhook-client-ca"}},
		"policy": map[string]any{
			"existingConfigMap": "my-policy",
			"items":             []any{map[string]any{"key": "lib.rego", "path": "lib.rego"}},
		},
		"networkPolicy": map[string]any{
			"enabled":        true,
			"apiServerCIDRs": []any{"10.0.0.0/24"},
			"webhookFrom":    []any{map[string]any{"namespaceSelector": map[string]any{"matchLabels": map[string]any{"kubernetes.io/metadata.name": "kube-system"}}}},
		},
	}
	objs := render(t, values)
	var d appsv1.Deployment
	convert(t, find(t, objs, "Deployment", "nsprov"), &d)
	opts := serveOptions(t, &d)
	if opts.Webhook.ClientCAFile != "/etc/nsprov/client-ca/ca.crt" {
		t.Errorf("--client-ca-file %q, want /etc/nsprov/client-ca/ca.crt", opts.Webhook.ClientCAFile)
	}
	if opts.Policy.LastGood != server.DefaultLastGoodConfigMap {
		t.Errorf("--policy-last-good %q, want %s", opts.Policy.LastGood, server.DefaultLastGoodConfigMap)
	}
	found := false
	for _, v := range d.Spec.Template.Spec.Volumes {
		if v.Name == "client-ca" && v.Secret != nil && v.Secret.SecretName == "apiserver-webhook-client-ca" {
			found = true
		}
	}
	if !found || !slices.ContainsFunc(d.Spec.Template.Spec.Containers[0].VolumeMounts, func(m corev1.VolumeMount) bool {
		return m.Name == "client-ca" && m.MountPath == "/etc/nsprov/client-ca"
	}) {
		t.Errorf("the client CA Secret is not mounted at /etc/nsprov/client-ca: %+v", d.Spec.Template.Spec.Volumes)
	}

	var role rbacv1.Role
	convert(t, findIn(t, objs, "Role", "nsprov", releaseNamespace), &role)
	if !grants(role.Rules, "configmaps", "update", server.DefaultLastGoodConfigMap) || !grants(role.Rules, "configmaps", "create", "") {
		t.Errorf("the Role does not let nsprov create and update ConfigMap %s: %+v", server.DefaultLastGoodConfigMap, role.Rules)
	}

	var np networkingv1.NetworkPolicy
	convert(t, find(t, objs, "NetworkPolicy", "nsprov"), &np)
	from := np.Spec.Ingress[0].From
	if len(from) != 2 || from[0].IPBlock == nil || from[0].IPBlock.CIDR != "10.0.0.0/24" || from[1].NamespaceSelector == nil {
		t.Errorf("webhook port sources %+v, want the ipBlock 10.0.0.0/24 and the kube-system namespaceSelector", from)
	}

	// Off: no last good flag value and no ConfigMap grant.
	values["policy"].(map[string]any)["lastGood"] = map[string]any{"enabled": false}
	objs = render(t, values)
	convert(t, find(t, objs, "Deployment", "nsprov"), &d)
	if opts := serveOptions(t, &d); opts.Policy.LastGood != "" {
		t.Errorf("--policy-last-good %q with policy.lastGood.enabled=false, want empty", opts.Policy.LastGood)
	}
	convert(t, findIn(t, objs, "Role", "nsprov", releaseNamespace), &role)
	if grants(role.Rules, "configmaps", "create", "") {
		t.Errorf("the Role grants ConfigMaps with policy.lastGood.enabled=false: %+v", role.Rules)
	}

	// A client CA without a source is refused.
	_, err := chartrender.Render(map[string]any{"webhook": map[string]any{"clientCA": map[string]any{"enabled": true}}}, releaseNamespace)
	if err == nil || !strings.Contains(err.Error(), "webhook.clientCA.secretName") {
		t.Errorf("rendering webhook.clientCA.enabled without a Secret or ConfigMap: %v, want an error naming webhook.clientCA.secretName", err)
	}
}

func serveOptions(t *testing.T, d *appsv1.Deployment) *app.ServeOptions {
	t.Helper()
	opts := &app.ServeOptions{}
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	opts.AddFlags(fs)
	if err := fs.Parse(d.Spec.Template.Spec.Containers[0].Args[1:]); err != nil {
		t.Fatalf("nsprov serve refuses the chart's arguments: %v", err)
	}
	return opts
}

// findIn returns the rendered object of kind, name and namespace.
func findIn(t *testing.T, objs []*unstructured.Unstructured, kind, name, ns string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name && o.GetNamespace() == ns {
			return o
		}
	}
	t.Fatalf("the chart renders no %s %s/%s", kind, ns, name)
	return nil
}

// grants tells whether a rule allows verb on resource (of the core group),
// for the object name (any name when name is empty and the rule names none).
func grants(rules []rbacv1.PolicyRule, resource, verb, name string) bool {
	for _, r := range rules {
		if slices.Contains(r.APIGroups, "") && slices.Contains(r.Resources, resource) && slices.Contains(r.Verbs, verb) &&
			(len(r.ResourceNames) == 0 || slices.Contains(r.ResourceNames, name)) {
			return true
		}
	}
	return false
}
