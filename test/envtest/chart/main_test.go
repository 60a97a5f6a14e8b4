package chart

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crenvtest "sigs.k8s.io/controller-runtime/pkg/envtest"
	crlog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/nsprov/nsprov/test/envtest"
	"github.com/nsprov/nsprov/test/envtest/chartrender"
)

// releaseNamespace is where the tests install the chart: the namespace the
// policy's manager_users expects.
const releaseNamespace = "nsprov-system"

var (
	// controlPlane is the package's API server, with Argo's, cert-manager's
	// and OpenReports' CRDs and no webhooks but those a test installs.
	controlPlane *crenvtest.Environment
	// admin is a system:masters client.
	admin client.Client
)

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	crlog.SetLogger(logr.Discard())
	code := m.Run()
	if controlPlane != nil {
		if err := controlPlane.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "chart tests: stopping the control plane: %v\n", err)
		}
	}
	return code
}

var (
	planeOnce sync.Once
	planeErr  error
)

// apiServer starts the package's control plane for the first test that
// needs one (lint and rendering tests need none, so `make lint-chart` runs
// without control-plane binaries).
func apiServer(t *testing.T) {
	t.Helper()
	planeOnce.Do(func() { planeErr = startControlPlane() })
	if planeErr != nil {
		t.Fatal(planeErr)
	}
}

func startControlPlane() error {
	assets, err := envtest.AssetsDir()
	if err != nil {
		return err
	}
	crds, err := envtest.CRDPaths()
	if err != nil {
		return err
	}
	controlPlane = &crenvtest.Environment{
		BinaryAssetsDirectory:    assets,
		CRDInstallOptions:        crenvtest.CRDInstallOptions{MaxTime: 2 * time.Minute, Paths: crds, ErrorIfPathMissing: true},
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  time.Minute,
		Scheme:                   envtest.Scheme,
	}
	cfg, err := controlPlane.Start()
	if err != nil {
		return fmt.Errorf("starting the control plane: %w", err)
	}
	admin, err = client.New(cfg, client.Options{Scheme: envtest.Scheme})
	return err
}

// valueSets are the default values (nil) and each ci/*-values.yaml, by name.
func valueSets(t *testing.T) map[string]map[string]any {
	t.Helper()
	files, err := chartrender.CIValuesFiles()
	if err != nil {
		t.Fatal(err)
	}
	sets := map[string]map[string]any{"default": nil}
	for _, f := range files {
		v, err := chartrender.ValuesFile(f)
		if err != nil {
			t.Fatal(err)
		}
		sets[strings.TrimSuffix(filepath.Base(f), "-values.yaml")] = v
	}
	return sets
}

func render(t *testing.T, values map[string]any) []*unstructured.Unstructured {
	t.Helper()
	objs, err := chartrender.Render(values, releaseNamespace)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// find returns the rendered object of kind and name.
func find(t *testing.T, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			return o
		}
	}
	t.Fatalf("the chart renders no %s %s", kind, name)
	return nil
}

// monitoringKinds are prometheus-operator's kinds. No pinned module ships
// their CRDs, so they are checked structurally instead of on the API server.
var monitoringKinds = map[string]bool{"ServiceMonitor": true, "PrometheusRule": true}

// install creates the namespaces the chart installs into, then applies every
// rendered object (server-side apply, so a test may install twice). With
// dryRun the API server validates each object (schemas, CEL) and stores
// nothing but the namespaces.
func install(ctx context.Context, t *testing.T, objs []*unstructured.Unstructured, dryRun bool) {
	t.Helper()
	apiServer(t)
	for _, ns := range namespacesOf(objs) {
		err := admin.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("creating namespace %s: %v", ns, err)
		}
	}
	opts := []client.PatchOption{client.FieldOwner("helm"), client.ForceOwnership}
	if dryRun {
		opts = append(opts, client.DryRunAll)
	}
	for _, o := range objs {
		if monitoringKinds[o.GetKind()] {
			continue
		}
		obj := o.DeepCopy()
		if err := admin.Patch(ctx, obj, client.Apply, opts...); err != nil {
			t.Errorf("the API server refuses %s %s/%s: %v", o.GetKind(), o.GetNamespace(), o.GetName(), err)
		}
	}
}

func namespacesOf(objs []*unstructured.Unstructured) []string {
	seen := map[string]bool{}
	var out []string
	for _, o := range objs {
		if ns := o.GetNamespace(); ns != "" && !seen[ns] {
			seen[ns] = true
			out = append(out, ns)
		}
	}
	return out
}

// user is a configuration that authenticates as name with groups.
func user(t *testing.T, name string, groups ...string) *rest.Config {
	t.Helper()
	apiServer(t)
	u, err := controlPlane.AddUser(crenvtest.User{Name: name, Groups: groups}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return u.Config()
}
