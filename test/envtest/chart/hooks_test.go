package chart

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/releaseutil"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/nsprov/nsprov/cmd/webhook/app"
	"github.com/nsprov/nsprov/test/envtest/chartrender"
)

// hookPodSpec is the pod spec of the hook Job or Pod name.
func hookPodSpec(t *testing.T, hooks []*unstructured.Unstructured, name string) map[string]any {
	t.Helper()
	for _, h := range hooks {
		if h.GetName() != name || (h.GetKind() != "Job" && h.GetKind() != "Pod") {
			continue
		}
		path := []string{"spec"}
		if h.GetKind() == "Job" {
			path = []string{"spec", "template", "spec"}
		}
		spec, _, err := unstructured.NestedMap(h.Object, path...)
		if err != nil {
			t.Fatal(err)
		}
		return spec
	}
	t.Fatalf("the chart renders no hook Job or Pod %s", name)
	return nil
}

// jobArgs are the arguments of the container of the hook Job or Pod name.
func jobArgs(t *testing.T, hooks []*unstructured.Unstructured, name string) []string {
	t.Helper()
	containers, _, _ := unstructured.NestedSlice(hookPodSpec(t, hooks, name), "containers")
	if len(containers) != 1 {
		t.Fatalf("hook %s has %d containers, want 1", name, len(containers))
	}
	args, _, _ := unstructured.NestedStringSlice(containers[0].(map[string]any), "args")
	return args
}

// TestHooks: what Helm runs around the release's objects, and in which
// order (TestInstallAnywhere runs the hooks' commands at those moments).
func TestHooks(t *testing.T) {
	r, err := chartrender.RenderAll(nil, releaseNamespace)
	if err != nil {
		t.Fatal(err)
	}
	image := ""
	for _, o := range r.Objects {
		if o.GetKind() == "Deployment" {
			containers, _, _ := unstructured.NestedSlice(o.Object, "spec", "template", "spec", "containers")
			image, _, _ = unstructured.NestedString(containers[0].(map[string]any), "image")
		}
	}
	tests := []struct {
		name, event, serviceAccount string
		args                        []string
	}{
		{"nsprov-activate", "post-install,post-upgrade", "nsprov-hooks", []string{"webhooks", "activate", "--failure-policy=Fail", "--timeout=4m"}},
		{"nsprov-remove-webhooks", "pre-delete", "nsprov-hooks", []string{"webhooks", "remove"}},
		{"nsprov-test", "test", "nsprov-test", []string{"webhooks", "test", "--team=nsprov-smoke", "--as-user=nsprov-smoke-test", "--as-group=team-nsprov-smoke"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var hook *unstructured.Unstructured
			for _, h := range r.Hooks {
				if h.GetName() == tc.name && (h.GetKind() == "Job" || h.GetKind() == "Pod") {
					hook = h
				}
			}
			if hook == nil {
				t.Fatalf("no hook %s", tc.name)
			}
			if got := hook.GetAnnotations()[chartrender.HookAnnotation]; got != tc.event {
				t.Errorf("%s runs at %q, want %q", tc.name, got, tc.event)
			}
			spec := hookPodSpec(t, r.Hooks, tc.name)
			if sa, _, _ := unstructured.NestedString(spec, "serviceAccountName"); sa != tc.serviceAccount {
				t.Errorf("service account %q, want %s", sa, tc.serviceAccount)
			}
			containers, _, _ := unstructured.NestedSlice(spec, "containers")
			c := containers[0].(map[string]any)
			if got, _, _ := unstructured.NestedString(c, "image"); got != image {
				t.Errorf("image %q, want the Deployment's %q", got, image)
			}
			if nonRoot, _, _ := unstructured.NestedBool(c, "securityContext", "runAsNonRoot"); !nonRoot {
				t.Error("the container may run as root")
			}
			args := jobArgs(t, r.Hooks, tc.name)
			if !slices.Equal(args, tc.args) {
				t.Errorf("args %q, want %q", args, tc.args)
			}
			// The command and its flags exist (--help stops after parsing).
			var out strings.Builder
			if code := app.Run(t.Context(), append(slices.Clone(args), "--help"), strings.NewReader(""), &out, &out); code != 0 || !strings.Contains(out.String(), "nsprov "+strings.Join(args[:2], " ")) {
				t.Errorf("nsprov refuses the hook's command line %q (exit %d):\n%s", args, code, out.String())
			}
		})
	}

	// The test hook's RBAC is created before its Pod and removed after.
	for _, h := range r.Hooks {
		a := h.GetAnnotations()
		if a[chartrender.HookAnnotation] != "test" || h.GetKind() == "Pod" {
			continue
		}
		if a["helm.sh/hook-weight"] != "-10" || !strings.Contains(a["helm.sh/hook-delete-policy"], "hook-succeeded") || !strings.Contains(a["helm.sh/hook-delete-policy"], "hook-failed") {
			t.Errorf("test hook %s %s: weight %q, delete policy %q; want it before the Pod and removed after the test", h.GetKind(), h.GetName(), a["helm.sh/hook-weight"], a["helm.sh/hook-delete-policy"])
		}
	}

	// Helm's uninstall deletes kinds it knows first: the Service and the
	// Deployment go before the webhook configurations, which is why the
	// pre-delete hook removes these first.
	manifests := map[string]string{}
	for i, o := range r.Objects {
		b, err := yaml.Marshal(o.Object)
		if err != nil {
			t.Fatal(err)
		}
		manifests[fmt.Sprintf("m%04d", i)] = string(b)
	}
	_, sorted, err := releaseutil.SortManifests(manifests, nil, releaseutil.UninstallOrder)
	if err != nil {
		t.Fatal(err)
	}
	pos := map[string]int{}
	for i, m := range sorted {
		if _, ok := pos[m.Head.Kind]; !ok {
			pos[m.Head.Kind] = i
		}
	}
	if !(pos["Service"] < pos["ValidatingWebhookConfiguration"] && pos["Deployment"] < pos["MutatingWebhookConfiguration"]) {
		t.Errorf("Helm's uninstall order %v no longer deletes the Service and Deployment before the webhook configurations; the pre-delete hook may be unneeded", pos)
	}
}
