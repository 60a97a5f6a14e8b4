package chart

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/nsprov/nsprov/internal/server"
	"github.com/nsprov/nsprov/policies"
	"github.com/nsprov/nsprov/test/envtest"
)

// embeddedPolicyFiles is the embedded bundle as the chart's policy.files.
func embeddedPolicyFiles(t *testing.T) map[string]any {
	t.Helper()
	files := map[string]any{}
	err := fs.WalkDir(policies.Bundle, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(p, "_test.rego") {
			return err
		}
		b, err := fs.ReadFile(policies.Bundle, p)
		files[p] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// configMapMount lays out a ConfigMap's items as the kubelet mounts them: the
// files in a timestamped directory, a ..data link to it, and a link per
// top-level entry into ..data. Each update swaps ..data atomically.
type configMapMount struct {
	dir   string
	items []corev1.KeyToPath
	n     int
}

func (m *configMapMount) update(t *testing.T, data map[string]string) {
	t.Helper()
	m.n++
	ts := fmt.Sprintf("..2026_11_26_00_00_%02d.%d", m.n, time.Now().UnixNano())
	top := map[string]bool{}
	for _, it := range m.items {
		content, ok := data[it.Key]
		if !ok {
			t.Fatalf("the ConfigMap has no key %s", it.Key)
		}
		p := filepath.Join(m.dir, ts, filepath.FromSlash(it.Path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		top[strings.SplitN(it.Path, "/", 2)[0]] = true
	}
	tmp := filepath.Join(m.dir, "..data_tmp")
	if err := os.Symlink(ts, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(m.dir, "..data")); err != nil {
		t.Fatal(err)
	}
	for name := range top {
		link := filepath.Join(m.dir, name)
		if _, err := os.Lstat(link); err == nil {
			continue
		}
		if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
			t.Fatal(err)
		}
	}
}

// TestPolicyHotReload installs the chart with the embedded bundle in its
// policy ConfigMap and runs `nsprov serve` on a kubelet-like mount of it. A
// valid edit of the ConfigMap takes effect without a restart; a broken edit
// is rejected, the previous bundle keeps serving, and a Warning Event on the
// pod and the metrics say why.
func TestPolicyHotReload(t *testing.T) {
	ctx := context.Background()
	objs := render(t, map[string]any{
		"policy":    map[string]any{"files": embeddedPolicyFiles(t), "pollInterval": "200ms"},
		"requester": map[string]any{"enabled": true, "groups": []any{"team-payments", "team-web"}},
	})
	install(ctx, t, objs, false)

	// The pod nsprov runs as, for the downward API's variables.
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: releaseNamespace, GenerateName: "nsprov-"},
		Spec: corev1.PodSpec{
			ServiceAccountName: "nsprov", AutomountServiceAccountToken: ptr.To(false),
			Containers: []corev1.Container{{Name: "nsprov", Image: "ghcr.io/nsprov/nsprov:test"}},
		},
	}
	if err := admin.Create(ctx, pod); err != nil {
		t.Fatal(err)
	}
	t.Setenv("POD_NAME", pod.Name)
	t.Setenv("POD_NAMESPACE", pod.Namespace)
	t.Setenv("POD_UID", string(pod.UID))

	var deploy appsv1.Deployment
	convert(t, find(t, objs, "Deployment", "nsprov"), &deploy)
	var mount *configMapMount
	for _, v := range deploy.Spec.Template.Spec.Volumes {
		if v.Name == "policy" && v.ConfigMap != nil && v.ConfigMap.Name == "nsprov-policy" {
			mount = &configMapMount{dir: t.TempDir(), items: v.ConfigMap.Items}
		}
	}
	if mount == nil {
		t.Fatal("the Deployment mounts no nsprov-policy ConfigMap")
	}
	cm := &corev1.ConfigMap{}
	if err := admin.Get(ctx, client.ObjectKey{Namespace: releaseNamespace, Name: "nsprov-policy"}, cm); err != nil {
		t.Fatal(err)
	}
	mount.update(t, cm.Data)

	r := startReplica(t, deploymentArgs(t, objs), "--policy-dir", mount.dir, "--controller=false",
		"--cert-namespace", releaseNamespace, "--cert-hosts", "127.0.0.1")
	pointWebhooksAt(ctx, t, objs, r.webhook)
	if !strings.Contains(r.log.String(), mount.dir) {
		t.Fatalf("serve did not load the mounted bundle:\n%s", r.log.String())
	}
	bob := newClient(t, user(t, "bob", "team-web"))
	alice := newClient(t, user(t, "alice", "team-payments"))
	envtest.Eventually(t, time.Minute, "the webhooks answering", func() error { return checkWebhooksAnswer(ctx, bob, alice, "reload-before-dev") })

	// editConfigMap changes one file through the API and lets the "kubelet"
	// mount it.
	editConfigMap := func(key string, edit func(string) string) {
		t.Helper()
		if err := admin.Get(ctx, client.ObjectKeyFromObject(cm), cm); err != nil {
			t.Fatal(err)
		}
		cm.Data[key] = edit(cm.Data[key])
		if err := admin.Update(ctx, cm); err != nil {
			t.Fatal(err)
		}
		mount.update(t, cm.Data)
	}
	legacy := requested("legacy-app-dev")
	if err := alice.Create(ctx, legacy.DeepCopy(), client.DryRunAll); err != nil {
		t.Fatalf("before the edit legacy-app-dev is allowed: %v", err)
	}

	// A valid edit: reserve the prefix legacy-.
	editConfigMap("config.names.yaml", func(s string) string {
		return strings.Replace(s, "reserved_prefixes: [", "reserved_prefixes: [legacy-, ", 1)
	})
	wantDenied := func() error {
		err := alice.Create(ctx, legacy.DeepCopy(), client.DryRunAll)
		if err == nil || !strings.Contains(err.Error(), "name-reserved: ") {
			return fmt.Errorf("legacy-app-dev: got %v, want a name-reserved denial", err)
		}
		return nil
	}
	envtest.Eventually(t, time.Minute, "the edited policy serving", wantDenied)
	if v, err := metricValue(r.metrics, "nsprov_policy_reloads_total"); err != nil || v < 1 {
		t.Errorf("nsprov_policy_reloads_total = %v (%v), want at least 1", v, err)
	}
	// One series of nsprov_policy_info: the mounted bundle, compiled.
	body, err := get(r.metrics)
	if err != nil {
		t.Fatal(err)
	}
	info := envtest.GrepLines(string(body), "nsprov_policy_info{")
	if strings.Count(info, "\n") != 0 || !strings.Contains(info, `evaluator="compiled"`) || !strings.Contains(info, `source="`+mount.dir+`"`) || !strings.HasSuffix(info, "} 1") {
		t.Errorf("nsprov_policy_info series:\n%s\nwant one, compiled, from the mounted directory", info)
	}

	// A broken edit: rejected, the edited bundle keeps serving.
	editConfigMap("lib.rego", func(s string) string { return s + "\nthis is not rego\n" })
	envtest.Eventually(t, time.Minute, "the broken edit rejected", func() error {
		if v, err := metricValue(r.metrics, "nsprov_policy_reload_errors_total"); err != nil || v < 1 {
			return fmt.Errorf("nsprov_policy_reload_errors_total = %v (%v)", v, err)
		}
		return nil
	})
	envtest.Eventually(t, time.Minute, "a PolicyReloadFailed Event on the pod", func() error {
		list := &eventsv1.EventList{}
		if err := admin.List(ctx, list, client.InNamespace(releaseNamespace)); err != nil {
			return err
		}
		for _, e := range list.Items {
			if e.Reason == server.ReasonPolicyReloadFailed && e.Type == corev1.EventTypeWarning &&
				e.Regarding.Kind == "Pod" && e.Regarding.Name == pod.Name && e.Regarding.UID == pod.UID &&
				strings.Contains(e.Note, "lib.rego") && strings.Contains(e.Note, "previous bundle keeps serving") {
				return nil
			}
		}
		return fmt.Errorf("none among %d events", len(list.Items))
	})
	if err := wantDenied(); err != nil {
		t.Errorf("after the broken edit the previous bundle must keep serving: %v", err)
	}
	if err := checkWebhooksAnswer(ctx, bob, alice, "reload-after-dev"); err != nil {
		t.Error(err)
	}
}
