package envtest

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/util/retry"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/nsprov/nsprov/internal/admission"
	"github.com/nsprov/nsprov/policies"
)

// env is the control plane shared by the package's tests. Namespaces cannot
// be deleted for good without the namespace controller, so every test uses
// names of its own.
var env *Env

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

// policyDir holds the policy the webhooks and the controller use: a copy of
// the embedded bundle, reloaded when a test edits it.
var policyDir string

func runMain(m *testing.M) int {
	ctx := context.Background()
	var err error
	if policyDir, err = os.MkdirTemp("", "nsprov-envtest-policy-"); err != nil {
		fmt.Fprintf(os.Stderr, "envtest: %v\n", err)
		return 1
	}
	defer os.RemoveAll(policyDir)
	if err := policies.Export(policyDir); err != nil {
		fmt.Fprintf(os.Stderr, "envtest: %v\n", err)
		return 1
	}
	env, err = Start(ctx, Options{Recorder: decisions, PolicyDir: policyDir})
	if err != nil {
		fmt.Fprintf(os.Stderr, "envtest: %v\n", err)
		return 1
	}
	code := m.Run()
	if err := env.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "envtest: stopping the control plane: %v\n", err)
	}
	return code
}

// decisions holds every admission decision the webhooks made.
var decisions = &decisionLog{}

type decisionLog struct {
	mu   sync.Mutex
	list []admission.Record
}

func (d *decisionLog) Record(_ context.Context, r *admission.Record) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.list = append(d.list, *r)
}

// about lists the decisions made about one namespace.
func (d *decisionLog) about(name string) []admission.Record {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []admission.Record
	for _, r := range d.list {
		if r.Namespace == name {
			out = append(out, r)
		}
	}
	return out
}

// warnings collects the admission warnings a client receives.
type warnings struct {
	mu   sync.Mutex
	list []string
}

func (w *warnings) HandleWarningHeader(_ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.list = append(w.list, text)
}

func (w *warnings) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	l := w.list
	w.list = nil
	return l
}

// user is a client authenticated as one user, with the warnings it received.
type user struct {
	name     string
	client   client.Client
	warnings *warnings
}

// update applies change to the stored namespace as u, and retries when
// another writer (nsprov's controller, say) updated it in between.
func (u *user) update(ctx context.Context, name string, change func(*corev1.Namespace)) error {
	return retry.RetryOnConflict(retry.DefaultRetry, func() error {
		ns := &corev1.Namespace{}
		if err := env.Client.Get(ctx, client.ObjectKey{Name: name}, ns); err != nil {
			return err
		}
		change(ns)
		return u.client.Update(ctx, ns)
	})
}

func newUser(t *testing.T, name string, groups ...string) *user {
	t.Helper()
	cfg, err := env.User(name, groups...)
	if err != nil {
		t.Fatal(err)
	}
	return userFromConfig(t, name, cfg)
}

func userFromConfig(t *testing.T, name string, cfg *rest.Config) *user {
	t.Helper()
	cfg = rest.CopyConfig(cfg)
	w := &warnings{}
	cfg.WarningHandler = w
	c, err := client.New(cfg, client.Options{Scheme: Scheme})
	if err != nil {
		t.Fatal(err)
	}
	return &user{name: name, client: c, warnings: w}
}
