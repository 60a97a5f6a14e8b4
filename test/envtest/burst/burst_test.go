package burst

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/nsprov/nsprov/internal/contract"
	"github.com/nsprov/nsprov/internal/policy"
	"github.com/nsprov/nsprov/internal/server"
	"github.com/nsprov/nsprov/internal/trigger"
	"github.com/nsprov/nsprov/test/envtest"
)

const (
	// defaultBurst keeps `make test` quick; NSPROV_BURST sets the size.
	defaultBurst = 200
	// argoParallelism is how many Workflows Argo runs at once, and how many
	// namespaces must be provisioned through it.
	argoParallelism = 10
	// baselineNamespace holds the bare client's Workflows: neither Argo
	// (namespaced to the Argo namespace) nor nsprov looks at it.
	baselineNamespace = "burst-baseline"
)

var workflowsGVR = wfv1.SchemeGroupVersion.WithResource("workflows")

// burstSize is $NSPROV_BURST, or defaultBurst.
func burstSize(t *testing.T) int {
	v := os.Getenv("NSPROV_BURST")
	if v == "" {
		return defaultBurst
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("NSPROV_BURST=%q: want a positive number of namespaces, such as 10000", v)
	}
	return n
}

// serverOptions are the flags the harness's nsprov servers run with, as far
// as the measurement needs them (the client settings and worker count the
// bare client copies).
func serverOptions(t *testing.T, extra []string) server.Options {
	var o server.Options
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	o.AddFlags(fs)
	if err := fs.Parse(extra); err != nil {
		t.Fatalf("NSPROV_BURST_SERVER_ARGS: %v", err)
	}
	return o
}

// requestCounter counts the requests sent through the transports it wraps.
type requestCounter struct {
	mu     sync.Mutex
	byVerb map[string]int
}

func (c *requestCounter) wrap(rt http.RoundTripper) http.RoundTripper {
	return roundTripper(func(r *http.Request) (*http.Response, error) {
		verb := r.Method
		if r.URL.Query().Get("watch") == "true" {
			verb = "WATCH"
		}
		c.mu.Lock()
		c.byVerb[verb]++
		c.mu.Unlock()
		return rt.RoundTrip(r)
	})
}

// snapshot is a copy of the counts so far.
func (c *requestCounter) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.byVerb))
	for k, v := range c.byVerb {
		out[k] = v
	}
	return out
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// heap is the process's heap after a full collection: live is what its
// objects take (MemStats.HeapAlloc then, what a heap profile adds up to),
// inUse the spans that hold them (HeapInuse: live plus the free slots of
// partly used spans, which the runtime fills before it asks for more).
type heap struct{ live, inUse uint64 }

func heapNow() heap {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return heap{live: m.HeapAlloc, inUse: m.HeapInuse}
}

// since is h over base: "+L MiB live (+U MiB in use)".
func (h heap) since(base heap) string {
	return fmt.Sprintf("+%.1f MiB live (+%.1f MiB in use)", mib(h.live)-mib(base.live), mib(h.inUse)-mib(base.inUse))
}

func (h heap) String() string {
	return fmt.Sprintf("%.1f MiB live (%.1f MiB in use)", mib(h.live), mib(h.inUse))
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

func TestBurstOfNamespaces(t *testing.T) {
	n := burstSize(t)
	// The controller is measured without its pacing (Argo runs only a few
	// Workflows at once here, so the running bound would hold the rest
	// back); NSPROV_BURST_SERVER_ARGS comes after, so it can set a pace.
	extra := append([]string{"--max-running-workflows=0", "--workflow-start-rate=0"}, strings.Fields(os.Getenv("NSPROV_BURST_SERVER_ARGS"))...)
	opts := serverOptions(t, extra)
	ctx, cancel := context.WithCancel(context.Background())
	requests := &requestCounter{byVerb: map[string]int{}}
	env, err := envtest.Start(ctx, envtest.Options{
		ArgoConfig:      map[string]string{"parallelism": strconv.Itoa(argoParallelism)},
		DeferController: true,
		DeferArgo:       true,
		ServerArgs:      extra,
		WrapTransport:   requests.wrap,
		Logger:          serverLog(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = env.Stop() }()
	defer cancel() // the controller started below stops first

	// 1. N requested namespaces through both webhooks; no controller yet.
	cfg, err := env.User("alice", "team-payments")
	if err != nil {
		t.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 500, 1000
	alice, err := client.New(cfg, client.Options{Scheme: envtest.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := parallel(n, 16, func(i int) error {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
			Name:        fmt.Sprintf("burst-%05d-dev", i),
			Annotations: map[string]string{contract.TeamAnnotation: "payments", contract.EnvironmentAnnotation: "development"},
		}}
		if err := alice.Create(ctx, ns); err != nil {
			return fmt.Errorf("creating namespace %s through the webhooks: %w", ns.Name, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	admitted := time.Since(start)
	t.Logf("admitted %d namespaces in %s", n, admitted.Round(time.Millisecond))

	// 2. The baseline: a bare client with the controller's client settings
	// and worker count creates as many Workflows, of the same content, on
	// the same API server, before the controller starts. Nobody watches the
	// baseline's namespace. Argo starts only after both (step 4): on a
	// cluster its step pods run on worker nodes, here they would take the
	// 2 cores from whichever of the two ran beside them.
	bare := baseline(ctx, t, env, opts)
	t.Logf("  bare client: %d Workflows in %s", n, bare.Round(time.Millisecond))

	// 3. A controller faces the backlog: until every namespace has its
	// Workflow, and until the controller has recorded it on each. (The
	// deadlines only catch a hang: a shared 2-core machine can be 50 times
	// slower than a quiet one.)
	heapBefore := heapNow()
	if path := os.Getenv("NSPROV_BURST_HEAP_PROFILE"); path != "" {
		writeHeapProfile(t, path+".before")
	}
	before := requests.snapshot()
	t.Logf("  heap before the controller starts: %s", heapBefore)
	mc, err := metadata.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	if err := env.StartController(ctx); err != nil {
		t.Fatal(err)
	}
	// Figures so far, every minute: a run that cannot finish (10,000
	// namespaces on a busy machine) still tells how it went.
	progress := func(have int) {
		sent := float64(0)
		for verb, c := range requests.snapshot() {
			sent += float64(c - before[verb])
		}
		t.Logf("  after %s: %d of %d namespaces have their Workflow (%.1f/s), %.2f API requests per Workflow so far, heap %s",
			time.Since(start).Round(time.Second), have, n, float64(have)/time.Since(start).Seconds(), sent/float64(max(have, 1)), heapNow().since(heapBefore))
	}
	progress(0)
	created := waitForWorkflows(ctx, t, mc, n, 20*time.Minute+time.Duration(n)*100*time.Millisecond, progress).Sub(start)
	recorded := envtest.Eventually(t, 10*time.Minute, "every namespace annotated with its Workflow", func() error {
		return countNamespaces(ctx, env.Client, n, func(ns *corev1.Namespace) bool {
			return ns.Annotations[contract.WorkflowAnnotation] != ""
		})
	}) + created
	after := heapNow()
	if path := os.Getenv("NSPROV_BURST_HEAP_PROFILE"); path != "" {
		writeHeapProfile(t, path)
	}
	perNamespace := map[string]float64{}
	total := 0.0
	for verb, c := range requests.snapshot() {
		perNamespace[verb] = float64(c-before[verb]) / float64(n)
		total += perNamespace[verb]
	}

	// 4. Provisioning for real, now that Argo starts: it runs ten at a
	// time; at least ten are provisioned through its controller and
	// argoexec. A failed one is shown, not fatal: on an overloaded machine
	// argoexec's kubectl can time out against the API server (seen: "failed
	// to download openapi"), which says nothing about nsprov.
	if err := env.StartArgo(ctx); err != nil {
		t.Fatal(err)
	}
	want := min(argoParallelism, n)
	var done []string
	failed := map[string]string{}
	envtest.Eventually(t, 15*time.Minute, fmt.Sprintf("%d namespaces Provisioned=True through Argo", want), func() error {
		done = done[:0]
		list := &corev1.NamespaceList{}
		if err := env.Client.List(ctx, list); err != nil {
			return err
		}
		for _, ns := range list.Items {
			for _, c := range ns.Status.Conditions {
				if c.Type != contract.ConditionProvisioned {
					continue
				}
				if c.Reason == contract.ReasonFailed {
					failed[ns.Name] = c.Message
				}
				if c.Status == corev1.ConditionTrue {
					done = append(done, ns.Name)
				}
			}
		}
		if len(done) < want {
			return fmt.Errorf("%d provisioned", len(done))
		}
		return nil
	})
	for name, msg := range failed {
		t.Logf("namespace %s: provisioning failed: %s", name, msg)
	}
	for _, name := range done[:want] {
		if err := env.Client.Get(ctx, client.ObjectKey{Namespace: name, Name: "nsprov-quota"}, &corev1.ResourceQuota{}); err != nil {
			t.Errorf("namespace %s is Provisioned=True but has no quota: %v", name, err)
		}
	}

	afterArgo := heapNow()
	if path := os.Getenv("NSPROV_BURST_HEAP_PROFILE"); path != "" {
		writeHeapProfile(t, path+".argo")
	}

	if dir := os.Getenv("NSPROV_BURST_FIXTURES"); dir != "" {
		writeFixtures(ctx, t, env.Client, done[0], dir)
	}

	t.Logf("burst of %d requested namespaces (real API server, real Argo with parallelism %d, process kubelet):", n, argoParallelism)
	t.Logf("  admission through both webhooks: %s, %.0f namespaces/s", admitted.Round(time.Millisecond), float64(n)/admitted.Seconds())
	t.Logf("  controller facing the backlog: every Workflow exists after %s (%.1f/s), every namespace annotated after %s",
		created.Round(time.Millisecond), float64(n)/created.Seconds(), recorded.Round(time.Millisecond))
	t.Logf("  bare client (QPS %g, burst %d, %d workers): %d Workflows in %s (%.1f/s); controller/bare = %.2f",
		opts.Kube.QPS, opts.Kube.Burst, opts.Controller.ConcurrentReconciles, n, bare.Round(time.Millisecond), float64(n)/bare.Seconds(), created.Seconds()/bare.Seconds())
	t.Logf("  API requests per namespace from nsprov's server: %.2f (%s)", total, formatVerbs(perNamespace))
	t.Logf("  heap: %s before the controller, %s with it: %s for its replica, policy store and cache of %d namespaces",
		heapBefore, after, after.since(heapBefore), n)
	t.Logf("  provisioned through Argo afterwards: %d namespaces (%d checked for their quota), %d failed; heap then %s",
		len(done), want, len(failed), afterArgo.since(heapBefore))
}

// parallel runs f(0..n-1) on workers goroutines and returns the first error.
func parallel(n, workers int, f func(i int) error) error {
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	next := make(chan int)
	for range workers {
		wg.Go(func() {
			for i := range next {
				if err := f(i); err != nil {
					once.Do(func() { first = err })
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return first
}

// waitForWorkflows watches nsprov's Workflows until every one of n namespaces
// has one, fails the test when a namespace has two, and returns when that
// was. Every minute it calls progress with how many have one.
func waitForWorkflows(ctx context.Context, t *testing.T, mc metadata.Interface, n int, timeout time.Duration, progress func(int)) time.Time {
	t.Helper()
	wfs := mc.Resource(workflowsGVR).Namespace(envtest.ArgoNamespace)
	selector := contract.ManagedByLabel + "=" + contract.ManagedBy
	seen := map[string]bool{}        // Workflow names
	perNamespace := map[string]int{} // requested namespace -> Workflows
	add := func(m *metav1.PartialObjectMetadata) {
		if seen[m.Name] {
			return
		}
		seen[m.Name] = true
		ns := m.Labels[contract.NamespaceLabel]
		if perNamespace[ns]++; perNamespace[ns] > 1 {
			t.Fatalf("namespace %s has %d Workflows, want 1", ns, perNamespace[ns])
		}
	}
	deadline := time.Now().Add(timeout)
	reported := time.Now()
	for {
		list, err := wfs.List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			t.Fatal(err)
		}
		for i := range list.Items {
			add(&list.Items[i])
		}
		if len(perNamespace) == n {
			return time.Now()
		}
		left := time.Until(deadline)
		if left <= 0 {
			t.Fatalf("after %s, %d of %d namespaces have a Workflow", timeout, len(perNamespace), n)
		}
		secs := int64(left.Seconds()) + 1
		w, err := wfs.Watch(ctx, metav1.ListOptions{LabelSelector: selector, ResourceVersion: list.ResourceVersion, TimeoutSeconds: &secs})
		if err != nil {
			t.Fatal(err)
		}
		for ev := range w.ResultChan() {
			if ev.Type == watch.Error {
				break // expired: list again
			}
			if m, ok := ev.Object.(*metav1.PartialObjectMetadata); ok && ev.Type == watch.Added {
				add(m)
				if time.Since(reported) > time.Minute {
					progress(len(perNamespace))
					reported = time.Now()
				}
				if len(perNamespace) == n {
					w.Stop()
					return time.Now()
				}
			}
		}
		w.Stop()
	}
}

// countNamespaces tells whether all n requested namespaces satisfy ok.
func countNamespaces(ctx context.Context, c client.Client, n int, ok func(*corev1.Namespace) bool) error {
	list := &corev1.NamespaceList{}
	if err := c.List(ctx, list); err != nil {
		return err
	}
	got := 0
	for i := range list.Items {
		if contract.IsRequested(&list.Items[i]) && ok(&list.Items[i]) {
			got++
		}
	}
	if got != n {
		return fmt.Errorf("%d of %d", got, n)
	}
	return nil
}

// baseline creates copies of nsprov's Workflows (name, labels, annotations,
// spec) in a namespace nobody watches, with a bare client that has the
// controller's client settings and worker count, and returns how long that
// took.
func baseline(ctx context.Context, t *testing.T, env *envtest.Env, o server.Options) time.Duration {
	t.Helper()
	// The Workflows the controller will create: the same plan, template
	// reference, labels and annotations, in a namespace of their own.
	bundle, err := policy.LoadEmbedded(ctx)
	if err != nil {
		t.Fatal(err)
	}
	list := &corev1.NamespaceList{}
	if err := env.Client.List(ctx, list); err != nil {
		t.Fatal(err)
	}
	as := contract.As(contract.DefaultUsername)
	var copies []*wfv1.Workflow
	for i := range list.Items {
		ns := &list.Items[i]
		if !contract.IsRequested(ns) {
			continue
		}
		raw, err := bundle.Plan(ctx, &policy.Request{Operation: "UPDATE", Username: as.Username, Groups: as.Groups, Object: ns, OldObject: ns})
		if err != nil || raw == nil {
			t.Fatalf("the plan of %s: %v (plan %v)", ns.Name, err, raw)
		}
		plan, err := trigger.DecodePlan(raw)
		if err != nil {
			t.Fatal(err)
		}
		key := trigger.Hash(trigger.Parameters(plan))
		copies = append(copies, trigger.NewWorkflow(ns, plan, key, 1, trigger.Options{ArgoNamespace: baselineNamespace}))
	}
	list = nil
	if err := env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: baselineNamespace}}); err != nil {
		t.Fatal(err)
	}
	cfg := rest.CopyConfig(env.Config)
	cfg.QPS, cfg.Burst = o.Kube.QPS, o.Kube.Burst
	c, err := client.New(cfg, client.Options{Scheme: envtest.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := parallel(len(copies), o.Controller.ConcurrentReconciles, func(i int) error {
		return c.Create(ctx, copies[i])
	}); err != nil {
		t.Fatalf("bare client: %v", err)
	}
	return time.Since(start)
}

// writeHeapProfile writes the process's heap profile (in use after the last
// GC) to path, for `go tool pprof -sample_index=inuse_space`.
func writeHeapProfile(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		t.Fatal(err)
	}
	t.Logf("  heap profile written to %s", path)
}

func formatVerbs(m map[string]float64) string {
	verbs := make([]string, 0, len(m))
	for v := range m {
		verbs = append(verbs, v)
	}
	sort.Strings(verbs)
	parts := make([]string, 0, len(verbs))
	for _, v := range verbs {
		if m[v] >= 0.005 {
			parts = append(parts, fmt.Sprintf("%s %.2f", v, m[v]))
		}
	}
	return strings.Join(parts, ", ")
}

// writeFixtures writes the Namespace and the Workflow that provisioned it,
// as the API server has them (managedFields included), as JSON into dir:
// NSPROV_BURST_FIXTURES refreshes internal/server/testdata with them, objects
// that Argo and nsprov really wrote, for the cache's heap benchmark.
func writeFixtures(ctx context.Context, t *testing.T, c client.Client, namespace, dir string) {
	t.Helper()
	ns := &corev1.Namespace{}
	if err := c.Get(ctx, client.ObjectKey{Name: namespace}, ns); err != nil {
		t.Fatal(err)
	}
	ref := strings.SplitN(ns.Annotations[contract.WorkflowAnnotation], "/", 2)
	if len(ref) != 2 {
		t.Fatalf("namespace %s names no Workflow", namespace)
	}
	wf := &wfv1.Workflow{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ref[0], Name: ref[1]}, wf); err != nil {
		t.Fatal(err)
	}
	ns.APIVersion, ns.Kind = "v1", "Namespace"
	wf.APIVersion, wf.Kind = wfv1.SchemeGroupVersion.String(), "Workflow"
	for name, obj := range map[string]any{"provisioned-namespace.json": ns, "provisioned-workflow.json": wf} {
		data, err := json.MarshalIndent(obj, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), append(data, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// serverLog is where nsprov's servers log: the file $NSPROV_BURST_LOG, or
// nowhere.
func serverLog(t *testing.T) logr.Logger {
	path := os.Getenv("NSPROV_BURST_LOG")
	if path == "" {
		return logr.Discard()
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatalf("NSPROV_BURST_LOG: %v", err)
	}
	t.Cleanup(func() { _ = f.Close() })
	var mu sync.Mutex
	return funcr.New(func(prefix, args string) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintln(f, time.Now().UTC().Format("15:04:05.000"), prefix, args)
	}, funcr.Options{})
}
