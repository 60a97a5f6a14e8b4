package policy

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nsprov/nsprov/internal/testutil"
)

// installYAML is a config/install.yaml as the chart renders it for a
// release in namespace with Argo in argo.
func installYAML(namespace, argo string) string {
	return "install:\n  namespace: " + namespace + "\n  argo_namespace: " + argo + "\n  manager_users:\n" +
		"    - system:serviceaccount:" + namespace + ":nsprov\n" +
		"    - system:serviceaccount:" + argo + ":nsprov-provisioner\n"
}

// overlayDir writes files (path: content) into a new directory.
func overlayDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for p, content := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// reservedRules are the rule IDs of a request for namespace name by a
// platform admin, who passes every other rule of that name.
func reservedRules(t *testing.T, b *Bundle, name string) []string {
	t.Helper()
	v, err := b.Validate(context.Background(), &Request{
		Operation: "CREATE", Username: "root", Groups: []string{"system:masters"},
		Object: testutil.Namespace(name, map[string]string{"nsprov.io/team": "payments", "nsprov.io/environment": "development"}, nil),
	})
	if err != nil {
		t.Fatal(err)
	}
	return slices.DeleteFunc(v.Rules(), func(r string) bool { return r != "name-reserved" })
}

func TestLoadLayered(t *testing.T) {
	ctx := context.Background()
	embedded, err := LoadEmbedded(ctx)
	if err != nil {
		t.Fatal(err)
	}
	overlay := overlayDir(t, map[string]string{"config/install.yaml": installYAML("platform-tools", "workflows")})
	b, err := LoadLayered(ctx, "", overlay)
	if err != nil {
		t.Fatal(err)
	}
	if b.Revision == embedded.Revision {
		t.Error("the overlay did not change the revision")
	}
	if b.Source != "embedded" || b.Overlay != overlay {
		t.Errorf("source %q, overlay %q; want embedded and %s", b.Source, b.Overlay, overlay)
	}
	install := b.data["config"].(map[string]any)["install"].(map[string]any)
	if install["namespace"] != "platform-tools" || install["argo_namespace"] != "workflows" {
		t.Errorf("data.config.install = %v, want the overlay's", install)
	}
	// The overlay's file replaces the bundle's; the bundle's other files stay.
	for _, tc := range []struct {
		bundle *Bundle
		name   string
		want   []string
	}{
		{embedded, "platform-tools", nil},
		{b, "platform-tools", []string{"name-reserved"}},
		{b, "workflows", []string{"name-reserved"}},
		{b, "cert-manager", []string{"name-reserved"}},
		{b, "nsprov-system", []string{"name-reserved"}}, // the nsprov- prefix
	} {
		if got := reservedRules(t, tc.bundle, tc.name); !slices.Equal(got, tc.want) {
			t.Errorf("%s (source %s): rules %q, want %q", tc.name, tc.bundle.Source, got, tc.want)
		}
	}

	// An overlay over a directory bundle.
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(filepath.Join("..", "..", "policies"))); err != nil {
		t.Fatal(err)
	}
	fromDir, err := LoadLayered(ctx, dir, overlay)
	if err != nil {
		t.Fatal(err)
	}
	if fromDir.Source != dir || fromDir.Overlay != overlay {
		t.Errorf("source %q, overlay %q; want %s and %s", fromDir.Source, fromDir.Overlay, dir, overlay)
	}
	if fromDir.Revision != b.Revision {
		t.Errorf("the same files layered over a copy of the embedded bundle have revision %s, want %s", fromDir.Revision, b.Revision)
	}

	for _, tc := range []struct {
		name, dir, overlay, want string
	}{
		{"missing overlay", "", filepath.Join(overlay, "missing"), "policy overlay directory"},
		{"overlay is a file", "", filepath.Join(overlay, "config", "install.yaml"), "is not a directory"},
		{"broken overlay data", "", overlayDir(t, map[string]string{"config/install.yaml": "install: [\n"}), "layered over it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := LoadLayered(ctx, tc.dir, tc.overlay); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestStoreWatchesOverlay: an edit of the overlay (a helm upgrade that
// changes the rendered ConfigMap) is loaded without a restart.
func TestStoreWatchesOverlay(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	overlay := overlayDir(t, map[string]string{"config/install.yaml": installYAML("platform-tools", "workflows")})
	s, err := NewLayeredStore(ctx, "", overlay)
	if err != nil {
		t.Fatal(err)
	}
	s.SetInterval(20 * time.Millisecond)
	done := make(chan struct{})
	go func() { _ = s.Watch(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	first := s.Bundle()
	if got := reservedRules(t, first, "tools-dev"); len(got) != 0 {
		t.Fatalf("tools-dev is reserved before the edit: %q", got)
	}
	writeAtomic(t, filepath.Join(overlay, "config", "install.yaml"), installYAML("tools-dev", "workflows"))
	eventually(t, "the edited overlay", func() bool { return s.Bundle() != first })
	if got := reservedRules(t, s.Bundle(), "tools-dev"); !slices.Equal(got, []string{"name-reserved"}) {
		t.Errorf("after the edit tools-dev has rules %q, want name-reserved", got)
	}
}
