package rollout

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/nsprov/nsprov/internal/contract"
	"github.com/nsprov/nsprov/internal/policy"
	"github.com/nsprov/nsprov/internal/trigger"
	"github.com/nsprov/nsprov/test/envtest"
)

const (
	// namespaces is how many namespaces are requested.
	namespaces = 1000
	// prefix starts their names.
	prefix = "roll-"
	// requesters is how many clients request them at once.
	requesters = 16
)

func name(i int) string { return fmt.Sprintf("%s%04d-dev", prefix, i) }

// TestPolicyChangeRollsOutWithinTheBound requests 1,000 namespaces, waits
// until all are provisioned, then raises the CPU quota of the tier they all
// have (their default, small): every plan changes. Throughout, a watch on the
// Workflows counts the unfinished ones at every change; it never exceeds
// --max-running-workflows. In the end every namespace is Provisioned=True
// with the plan of the new policy, provisioned by exactly one new Workflow.
func TestPolicyChangeRollsOutWithinTheBound(t *testing.T) {
	ctx := context.Background()
	watching, stopWatching := context.WithCancel(ctx)
	defer stopWatching()
	obs := observe(watching, t)

	// 1,000 requests, as a requester, through both webhooks.
	cfg, err := env.User("alice", "team-payments")
	if err != nil {
		t.Fatal(err)
	}
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = 1000, 1000
	alice, err := client.New(cfg, client.Options{Scheme: envtest.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	obs.wave(1)
	if err := requestAll(ctx, alice); err != nil {
		t.Fatal(err)
	}
	admitted := time.Since(start)
	tmpl := template(ctx, t)
	before := waitProvisioned(t, tmpl, nil)
	wave1 := time.Since(start)
	t.Logf("reconciles after wave 1, by result: %v", reconciles())
	waitGaugeZero(t)

	// The platform team raises the small tier's CPU quota: every plan
	// changes.
	tiers := filepath.Join(policyDir, "config", "tiers.yaml")
	orig, err := os.ReadFile(tiers)
	if err != nil {
		t.Fatal(err)
	}
	raised := strings.Replace(string(orig), `quota: {cpu: "2", memory: 4Gi`, `quota: {cpu: "3", memory: 4Gi`, 1)
	if raised == string(orig) {
		t.Fatal("tiers.yaml has no small quota of 2 CPUs to raise")
	}
	revision := env.Policies.Bundle().Revision
	obs.wave(2)
	start = time.Now()
	if err := writeAtomic(tiers, []byte(raised)); err != nil {
		t.Fatal(err)
	}
	envtest.Eventually(t, time.Minute, "the changed policy loaded", func() error {
		if env.Policies.Bundle().Revision == revision {
			return errors.New("still the first revision")
		}
		return nil
	})
	after := waitProvisioned(t, tmpl, before)
	wave2 := time.Since(start)
	t.Logf("reconciles after wave 2, by result: %v", reconciles())
	waitGaugeZero(t)
	stopWatching()
	obs.wait()

	for i := range namespaces {
		n := name(i)
		if before[n] == after[n] {
			t.Errorf("%s: provisioned plan %s unchanged by the policy change", n, after[n])
		}
	}
	// Every namespace had exactly two Workflows: one for its request, one
	// for the change, which ran the new quota.
	list := &wfv1.WorkflowList{}
	if err := env.Client.List(ctx, list, client.InNamespace(envtest.ArgoNamespace)); err != nil {
		t.Fatal(err)
	}
	byKey := map[string]int{}
	for _, wf := range list.Items {
		byKey[wf.Labels[contract.NamespaceLabel]+" "+wf.Annotations[contract.ProvisionedPlanAnnotation]]++
		if wf.Annotations[contract.ProvisionedPlanAnnotation] != after[wf.Labels[contract.NamespaceLabel]] {
			continue
		}
		if got := parameter(&wf, "quota-cpu"); got != "3" {
			t.Errorf("Workflow %s of the change has quota-cpu %q, want the raised 3", wf.Name, got)
		}
	}
	for i := range namespaces {
		n := name(i)
		for _, key := range []string{before[n], after[n]} {
			if got := byKey[n+" "+key]; got != 1 {
				t.Errorf("%s: %d Workflows for plan %s, want 1", n, got, key)
			}
		}
	}

	obs.mu.Lock()
	defer obs.mu.Unlock()
	for _, w := range []*waveFigures{&obs.waves[1], &obs.waves[2]} {
		if w.created != namespaces {
			t.Errorf("wave %d: %d Workflows created, want one per namespace (%d)", w.n, w.created, namespaces)
		}
	}
	t.Logf("%d namespaces admitted in %s (%.0f/s)", namespaces, admitted.Round(time.Millisecond), namespaces/admitted.Seconds())
	t.Logf("wave 1 (the requests): every namespace provisioned in %s; %s", wave1.Round(time.Second), obs.waves[1])
	t.Logf("wave 2 (the policy change): every namespace provisioned again in %s; %s", wave2.Round(time.Second), obs.waves[2])
	for _, w := range obs.waves[1:] {
		if w.mostUnfinished > maxRunning {
			t.Errorf("wave %d: %d Workflows unfinished at once, bound %d", w.n, w.mostUnfinished, maxRunning)
		}
	}
	w := obs.waves[2]
	if w.mostUnfinished == 0 || w.mostQueued == 0 || w.mostGauge == 0 {
		t.Errorf("wave 2 never reached the bound: at most %d Workflows unfinished, %d namespaces Queued, queued gauge at most %g",
			w.mostUnfinished, w.mostQueued, w.mostGauge)
	}
	if obs.err != nil {
		t.Errorf("watching: %v", obs.err)
	}
}

// requestAll creates the namespaces as c, requesters at a time.
func requestAll(ctx context.Context, c client.Client) error {
	next := make(chan int)
	errs := make(chan error, requesters)
	var wg sync.WaitGroup
	for range requesters {
		wg.Go(func() {
			for i := range next {
				ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
					Name:        name(i),
					Annotations: map[string]string{contract.TeamAnnotation: "payments", contract.EnvironmentAnnotation: "development"},
				}}
				if err := c.Create(ctx, ns); err != nil {
					errs <- fmt.Errorf("requesting %s: %w", ns.Name, err)
					return
				}
			}
		})
	}
	var err error
feed:
	for i := range namespaces {
		select {
		case next <- i:
		case err = <-errs:
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err != nil {
		return err
	}
	select {
	case err = <-errs:
	default:
	}
	return err
}

// template is the installed (pod-less) WorkflowTemplate.
func template(ctx context.Context, t *testing.T) *wfv1.WorkflowTemplate {
	t.Helper()
	tmpl := &wfv1.WorkflowTemplate{}
	if err := env.Client.Get(ctx, client.ObjectKey{Namespace: envtest.ArgoNamespace, Name: trigger.TemplateName}, tmpl); err != nil {
		t.Fatal(err)
	}
	return tmpl
}

// wantKey is the run key the current policy gives ns with tmpl: what its
// nsprov.io/provisioned-plan must say once it is provisioned.
func wantKey(ctx context.Context, ns *corev1.Namespace, tmpl *wfv1.WorkflowTemplate) (string, error) {
	as := contract.As(envtest.ControllerUser)
	raw, err := env.Policies.Bundle().Plan(ctx, &policy.Request{Operation: "UPDATE", Username: as.Username, Groups: as.Groups, Object: ns, OldObject: ns})
	if err != nil {
		return "", err
	}
	if raw == nil {
		return "", fmt.Errorf("%s: the policy gives no plan", ns.Name)
	}
	plan, err := trigger.DecodePlan(raw)
	if err != nil {
		return "", err
	}
	return trigger.RunKey(trigger.Hash(trigger.Parameters(plan)), trigger.TemplateHash(&tmpl.Spec), ns.Annotations[contract.ReprovisionAnnotation]), nil
}

// waitProvisioned waits until every namespace is Provisioned=True with the
// plan the current policy gives it, its provisioning Succeeded, and returns
// each one's nsprov.io/provisioned-plan. With previous, a namespace that
// still records its previous plan is not done yet. It looks every 2s, and
// evaluates each namespace's plan once: the test shares the machine's CPU
// with what it measures.
func waitProvisioned(t *testing.T, tmpl *wfv1.WorkflowTemplate, previous map[string]string) map[string]string {
	t.Helper()
	ctx := context.Background()
	want := map[string]string{} // namespace -> its run key under the current policy
	deadline := time.Now().Add(20 * time.Minute)
	last := time.Now()
	for {
		keys := map[string]string{}
		list := &corev1.NamespaceList{}
		if err := env.Client.List(ctx, list); err != nil {
			t.Fatal(err)
		}
		pending := ""
		for i := range list.Items {
			ns := &list.Items[i]
			if !strings.HasPrefix(ns.Name, prefix) {
				continue
			}
			recorded := ns.Annotations[contract.ProvisionedPlanAnnotation]
			ok := recorded != "" && recorded != previous[ns.Name] &&
				ns.Annotations[contract.ProvisioningAnnotation] == contract.ProvisioningSucceeded
			for _, c := range ns.Status.Conditions {
				if c.Type == contract.ConditionProvisioned {
					ok = ok && c.Status == corev1.ConditionTrue && c.Reason == contract.ReasonSucceeded
				}
			}
			if ok && want[ns.Name] == "" {
				key, err := wantKey(ctx, ns, tmpl)
				if err != nil {
					t.Fatal(err)
				}
				want[ns.Name] = key
			}
			if !ok || recorded != want[ns.Name] {
				pending = fmt.Sprintf("%s: provisioned-plan %q (want %q), provisioning %q", ns.Name, recorded, want[ns.Name], ns.Annotations[contract.ProvisioningAnnotation])
				continue
			}
			keys[ns.Name] = recorded
		}
		if len(keys) == namespaces {
			return keys
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d namespaces provisioned with the current policy's plan after 20m; e.g. %s", len(keys), namespaces, pending)
		}
		if time.Since(last) > 20*time.Second {
			last = time.Now()
			t.Logf("%d of %d namespaces provisioned with the current policy's plan; reconciles by result %v", len(keys), namespaces, reconciles())
		}
		time.Sleep(2 * time.Second)
	}
}

// waitGaugeZero waits until nsprov_provisioning_queued is 0: once every
// namespace has started its Workflow, none waits.
func waitGaugeZero(t *testing.T) {
	t.Helper()
	envtest.Eventually(t, time.Minute, "nsprov_provisioning_queued back to 0", func() error {
		if g := queuedGauge(); g != 0 {
			return fmt.Errorf("nsprov_provisioning_queued = %g", g)
		}
		return nil
	})
}

// queuedGauge reads nsprov_provisioning_queued from the controller's
// registry (the server runs in this process); -1 when it is missing.
func queuedGauge() float64 {
	families, err := metrics.Registry.Gather()
	if err != nil {
		return -1
	}
	for _, f := range families {
		if f.GetName() == "nsprov_provisioning_queued" && len(f.GetMetric()) == 1 {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return -1
}

// reconciles reads controller_runtime_reconcile_total of nsprov's
// provisioning controller, by result, from the registry.
func reconciles() map[string]float64 {
	out := map[string]float64{}
	families, err := metrics.Registry.Gather()
	if err != nil {
		return out
	}
	for _, f := range families {
		if f.GetName() != "controller_runtime_reconcile_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["controller"] == "nsprov-trigger" {
				out[labels["result"]] += m.GetCounter().GetValue()
			}
		}
	}
	return out
}

func parameter(wf *wfv1.Workflow, name string) string {
	for _, p := range wf.Spec.Arguments.Parameters {
		if p.Name == name && p.Value != nil {
			return p.Value.String()
		}
	}
	return ""
}

// writeAtomic replaces path's content at once, as a ConfigMap volume does.
func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// waveFigures is what the observer saw during one wave.
type waveFigures struct {
	n              int
	mostUnfinished int     // Workflows unfinished at once, at any change the watch saw
	mostQueued     int     // namespaces whose condition said Queued at once
	mostGauge      float64 // nsprov_provisioning_queued
	created        int     // Workflows created
	finished       int     // Workflows that finished
}

func (w waveFigures) String() string {
	return fmt.Sprintf("%d Workflows created, %d finished, at most %d unfinished at once (bound %d), at most %d namespaces Queued, queued gauge at most %g",
		w.created, w.finished, w.mostUnfinished, maxRunning, w.mostQueued, w.mostGauge)
}

// observer watches the Workflows and the Namespaces from before the first
// request: it sees every change in the order the API server made them, so
// the count of unfinished Workflows it keeps is the count at every moment,
// not at samples.
type observer struct {
	mu         sync.Mutex
	current    int // the wave under way
	waves      [3]waveFigures
	unfinished map[string]bool // Workflow -> not finished
	running    int             // Workflows not finished
	queued     map[string]bool // Namespace -> Queued
	err        error
	wg         sync.WaitGroup
}

func observe(ctx context.Context, t *testing.T) *observer {
	t.Helper()
	wc, err := client.NewWithWatch(env.Config, client.Options{Scheme: envtest.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	o := &observer{unfinished: map[string]bool{}, queued: map[string]bool{}}
	for i := range o.waves {
		o.waves[i].n = i
	}
	// Each watch resumes from the last change it saw when the API server
	// closes it, so no change goes unseen.
	open := func(list client.ObjectList, opts ...client.ListOption) func(string) (watch.Interface, error) {
		return func(rv string) (watch.Interface, error) {
			return wc.Watch(ctx, list, append(opts, &client.ListOptions{Raw: &metav1.ListOptions{ResourceVersion: rv}})...)
		}
	}
	wfs := open(&wfv1.WorkflowList{}, client.InNamespace(envtest.ArgoNamespace))
	nss := open(&corev1.NamespaceList{})
	for _, w := range []func(string) (watch.Interface, error){wfs, nss} {
		probe, err := w("")
		if err != nil {
			t.Fatal(err)
		}
		probe.Stop()
	}
	o.wg.Go(func() { o.follow(ctx, wfs, o.workflow) })
	o.wg.Go(func() { o.follow(ctx, nss, o.namespace) })
	o.wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			g := queuedGauge()
			o.mu.Lock()
			w := &o.waves[o.current]
			w.mostGauge = max(w.mostGauge, g)
			o.mu.Unlock()
		}
	})
	return o
}

func (o *observer) wave(n int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.current = n
}

func (o *observer) wait() { o.wg.Wait() }

// follow hands every event of the watch open starts to handle until ctx
// ends, and opens it again from the last change it saw when the API server
// closes it; an error event (the changes since are gone) is an error.
func (o *observer) follow(ctx context.Context, open func(string) (watch.Interface, error), handle func(watch.Event)) {
	fail := func(err error) {
		o.mu.Lock()
		defer o.mu.Unlock()
		if o.err == nil {
			o.err = err
		}
	}
	rv := ""
	for ctx.Err() == nil {
		w, err := open(rv)
		if err != nil {
			if ctx.Err() == nil {
				fail(err)
			}
			return
		}
		for closed := false; !closed; {
			select {
			case <-ctx.Done():
				w.Stop()
				return
			case ev, ok := <-w.ResultChan():
				if !ok {
					closed = true
					break
				}
				if ev.Type == watch.Error {
					w.Stop()
					fail(fmt.Errorf("watch error %v: changes may have gone unseen", ev.Object))
					return
				}
				if m, err := meta.Accessor(ev.Object); err == nil {
					rv = m.GetResourceVersion()
				}
				o.mu.Lock()
				handle(ev)
				o.mu.Unlock()
			}
		}
		w.Stop()
	}
}

func (o *observer) workflow(ev watch.Event) {
	wf, ok := ev.Object.(*wfv1.Workflow)
	if !ok {
		return
	}
	w := &o.waves[o.current]
	was, known := o.unfinished[wf.Name]
	switch {
	case ev.Type == watch.Deleted:
		delete(o.unfinished, wf.Name)
	case !known:
		w.created++
		o.unfinished[wf.Name] = !wf.Status.Fulfilled()
	default:
		o.unfinished[wf.Name] = !wf.Status.Fulfilled()
	}
	now := o.unfinished[wf.Name]
	if was && !now && ev.Type != watch.Deleted {
		w.finished++
	}
	switch {
	case was && !now:
		o.running--
	case !was && now:
		o.running++
	}
	w.mostUnfinished = max(w.mostUnfinished, o.running)
}

func (o *observer) namespace(ev watch.Event) {
	ns, ok := ev.Object.(*corev1.Namespace)
	if !ok || !strings.HasPrefix(ns.Name, prefix) {
		return
	}
	queued := false
	for _, c := range ns.Status.Conditions {
		queued = queued || (c.Type == contract.ConditionProvisioned && c.Reason == contract.ReasonQueued)
	}
	if queued && ev.Type != watch.Deleted {
		o.queued[ns.Name] = true
	} else {
		delete(o.queued, ns.Name)
	}
	w := &o.waves[o.current]
	w.mostQueued = max(w.mostQueued, len(o.queued))
}
