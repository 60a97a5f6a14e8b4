package envtest

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

const (
	teamKey        = "nsprov.io/team"
	envKey         = "nsprov.io/environment"
	tierKey        = "nsprov.io/tier"
	netpolKey      = "nsprov.io/network-policy"
	featuresKey    = "nsprov.io/features"
	requestedByKey = "nsprov.io/requested-by"
	workflowKey    = "nsprov.io/workflow"
)

func namespace(name string, annotations, labels map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations, Labels: labels}}
}

// request is a Namespace with team and environment annotations plus extra.
func request(name, team, environment string, extra map[string]string) *corev1.Namespace {
	a := map[string]string{teamKey: team, envKey: environment}
	maps.Copy(a, extra)
	return namespace(name, a, nil)
}

func get(t *testing.T, name string) *corev1.Namespace {
	t.Helper()
	ns := &corev1.Namespace{}
	if err := env.Client.Get(context.Background(), client.ObjectKey{Name: name}, ns); err != nil {
		t.Fatalf("get namespace %s: %v", name, err)
	}
	return ns
}

// wantDenied checks that err is a denial by nsprov's validating webhook that
// names every rule in rules as "rule:".
func wantDenied(t *testing.T, err error, rules ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("request allowed, want denied by %v", rules)
	}
	if !apierrors.IsForbidden(err) {
		t.Fatalf("error is not Forbidden: %v", err)
	}
	msg := err.Error()
	if !strings.Contains(msg, `admission webhook "validate.namespaces.nsprov.io" denied the request`) {
		t.Fatalf("error does not come from nsprov's validating webhook: %v", msg)
	}
	for _, r := range rules {
		if !strings.Contains(msg, r+": ") {
			t.Errorf("denial does not name rule %s: %v", r, msg)
		}
	}
}

func TestAllowedRequestIsStoredWithMutations(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	alice := newUser(t, "alice", "team-payments")
	ns := request("payments-dev", "payments", "development", map[string]string{
		featuresKey:    " Istio,monitoring-enhanced,istio ",
		requestedByKey: "mallory", // a client-supplied value is replaced
	})
	if err := alice.client.Create(ctx, ns); err != nil {
		t.Fatalf("alice creating payments-dev: %v", err)
	}
	got := get(t, "payments-dev")
	wantAnnotations := map[string]string{
		teamKey: "payments", envKey: "development", tierKey: "small", netpolKey: "isolated",
		featuresKey: "istio,monitoring-enhanced", requestedByKey: "alice",
		"nsprov.io/provisioning": "Pending",
	}
	// The controller may have started provisioning already.
	maps.DeleteFunc(got.Annotations, func(k, _ string) bool {
		return k == "nsprov.io/workflow" || k == "nsprov.io/provisioned-plan"
	})
	if !maps.Equal(got.Annotations, wantAnnotations) {
		t.Errorf("annotations = %v, want %v", got.Annotations, wantAnnotations)
	}
	wantLabels := map[string]string{
		teamKey: "payments", envKey: "development", tierKey: "small",
		"kubernetes.io/metadata.name": "payments-dev",
	}
	if !maps.Equal(got.Labels, wantLabels) {
		t.Errorf("labels = %v, want %v", got.Labels, wantLabels)
	}
	w := alice.warnings.take()
	if !slices.Contains(w, "tier small costs $100 per month (2 CPU, 4Gi memory, 20Gi storage)") {
		t.Errorf("warnings = %q, want the tier's monthly cost", w)
	}
}

// TestEachRuleDenies makes, for every rule, a request that violates it and
// checks the denial names the rule.
func TestEachRuleDenies(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	alice := newUser(t, "alice", "team-payments")
	bob := newUser(t, "bob", "team-web")
	dev := func(name string, extra map[string]string) *corev1.Namespace {
		return request(name, "payments", "development", extra)
	}
	creates := []struct {
		rule string
		as   *user
		ns   *corev1.Namespace
	}{
		{"request-required", bob, namespace("scratch-bob", nil, nil)},
		{"team-required", alice, namespace("noteam-dev", map[string]string{envKey: "development"}, nil)},
		{"team-invalid", alice, request("badteam-dev", "Payments_Team", "development", nil)},
		{"environment-required", alice, namespace("noenv-dev", map[string]string{teamKey: "payments"}, nil)},
		{"environment-invalid", alice, request("badenv-qa", "payments", "qa", nil)},
		{"tier-invalid", alice, dev("badtier-dev", map[string]string{tierKey: "huge"})},
		{"tier-not-allowed-in-environment", alice, dev("bigtier-dev", map[string]string{tierKey: "large"})},
		{"network-policy-invalid", alice, dev("badnp-dev", map[string]string{netpolKey: "closed"})},
		{"network-policy-not-allowed-in-environment", alice, request("opennp-prod", "payments", "production", map[string]string{netpolKey: "open"})},
		{"feature-invalid", alice, dev("badfeature-dev", map[string]string{featuresKey: "istio,gpu"})},
		{"annotation-too-long", alice, dev("longfeatures-dev", map[string]string{featuresKey: manyFeatures(20000)})},
		{"too-many-features", alice, dev("manyfeatures-dev", map[string]string{featuresKey: manyFeatures(40)})},
		{"name-environment-suffix", alice, dev("payments-nosuffix", nil)},
		{"name-reserved", alice, dev("kube-payments-dev", nil)},
		{"name-reserved", alice, dev("nsprov-payments-dev", nil)},
		{"requester-not-in-team", bob, dev("bob-payments-dev", nil)},
		{"managed-metadata-forged", alice, namespace("forgedlabel-dev", map[string]string{teamKey: "payments", envKey: "development"}, map[string]string{"nsprov.io/owner": "alice"})},
		{"managed-metadata-forged", alice, dev("forgedworkflow-dev", map[string]string{workflowKey: "argo/fake"})},
		{"metadata-not-allowed", alice, dev("nodeselector-dev", map[string]string{"scheduler.alpha.kubernetes.io/node-selector": "pool=gpu"})},
	}
	for _, tc := range creates {
		t.Run("create/"+tc.rule+"/"+tc.ns.Name, func(t *testing.T) {
			t.Parallel()
			err := tc.as.client.Create(ctx, tc.ns.DeepCopy())
			wantDenied(t, err, tc.rule)
			if err := env.Client.Get(ctx, client.ObjectKey{Name: tc.ns.Name}, &corev1.Namespace{}); !apierrors.IsNotFound(err) {
				t.Errorf("denied namespace %s was stored (get: %v)", tc.ns.Name, err)
			}
		})
	}

	updates := []struct {
		rule   string
		as     *user
		name   string
		change func(*corev1.Namespace)
	}{
		{"team-immutable", alice, "teamchange-dev", func(ns *corev1.Namespace) { ns.Annotations[teamKey] = "web" }},
		{"environment-immutable", alice, "envchange-dev", func(ns *corev1.Namespace) { ns.Annotations[envKey] = "staging" }},
		{"request-annotations-removed", alice, "removed-dev", func(ns *corev1.Namespace) {
			delete(ns.Annotations, teamKey)
			delete(ns.Annotations, envKey)
		}},
		{"managed-metadata-forged", alice, "workflow-dev", func(ns *corev1.Namespace) { ns.Annotations[workflowKey] = "argo/fake" }},
		{"requester-not-in-team", bob, "bobtier-dev", func(ns *corev1.Namespace) { ns.Annotations[tierKey] = "medium" }},
		{"metadata-not-allowed", alice, "istiolabel-dev", func(ns *corev1.Namespace) { ns.Labels["istio-injection"] = "enabled" }},
	}
	for _, tc := range updates {
		t.Run("update/"+tc.rule+"/"+tc.name, func(t *testing.T) {
			t.Parallel()
			if err := alice.client.Create(ctx, dev(tc.name, nil)); err != nil {
				t.Fatalf("creating %s: %v", tc.name, err)
			}
			before := get(t, tc.name)
			wantDenied(t, tc.as.update(ctx, tc.name, tc.change), tc.rule)
			after := get(t, tc.name)
			for _, k := range []string{teamKey, envKey, tierKey, requestedByKey} {
				if after.Annotations[k] != before.Annotations[k] {
					t.Errorf("denied update changed %s: %q, was %q", k, after.Annotations[k], before.Annotations[k])
				}
			}
		})
	}
}

// TestRequesterMetadataIsChecked shows that a requester cannot give her
// namespace a Pod Security level, a node selector or a feature's label, one
// violation per key, while keys she does not change, and the keys
// Kubernetes and kubectl write, never stop an update.
func TestRequesterMetadataIsChecked(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	alice := newUser(t, "alice", "team-payments")

	privileged := request("privileged-dev", "payments", "development", map[string]string{
		"scheduler.alpha.kubernetes.io/node-selector": "pool=gpu",
	})
	privileged.Labels = map[string]string{
		"pod-security.kubernetes.io/enforce": "privileged",
		"monitoring.nsprov.io/enhanced":      "true",
	}
	err := alice.client.Create(ctx, privileged)
	wantDenied(t, err, "metadata-not-allowed")
	if got := strings.Count(err.Error(), "metadata-not-allowed: "); got != 3 {
		t.Errorf("denial has %d metadata-not-allowed violations, want one per key (3): %v", got, err)
	}
	for _, key := range []string{"pod-security.kubernetes.io/enforce", "scheduler.alpha.kubernetes.io/node-selector", "monitoring.nsprov.io/enhanced"} {
		if !strings.Contains(err.Error(), " "+key+"=") {
			t.Errorf("denial does not name %s: %v", key, err)
		}
	}
	if err := env.Client.Get(ctx, client.ObjectKey{Name: "privileged-dev"}, &corev1.Namespace{}); !apierrors.IsNotFound(err) {
		t.Errorf("denied namespace privileged-dev was stored (get: %v)", err)
	}

	// An admin set a Pod Security level on alice's namespace: alice can
	// neither lower nor remove it, and still changes her request.
	if err := alice.client.Create(ctx, request("restricted-dev", "payments", "development", nil)); err != nil {
		t.Fatalf("alice creating restricted-dev: %v", err)
	}
	admin := &user{name: "admin", client: env.Client}
	if err := admin.update(ctx, "restricted-dev", func(ns *corev1.Namespace) {
		ns.Labels["pod-security.kubernetes.io/enforce"] = "restricted"
	}); err != nil {
		t.Fatalf("admin labelling restricted-dev: %v", err)
	}
	wantDenied(t, alice.update(ctx, "restricted-dev", func(ns *corev1.Namespace) {
		ns.Labels["pod-security.kubernetes.io/enforce"] = "privileged"
	}), "metadata-not-allowed")
	wantDenied(t, alice.update(ctx, "restricted-dev", func(ns *corev1.Namespace) {
		delete(ns.Labels, "pod-security.kubernetes.io/enforce")
	}), "metadata-not-allowed")
	if err := alice.update(ctx, "restricted-dev", func(ns *corev1.Namespace) {
		ns.Annotations[tierKey] = "medium"
		ns.Annotations["kubectl.kubernetes.io/last-applied-configuration"] = "{}"
	}); err != nil {
		t.Fatalf("alice changing the tier of restricted-dev beside an admin's label: %v", err)
	}
	if got := get(t, "restricted-dev").Labels["pod-security.kubernetes.io/enforce"]; got != "restricted" {
		t.Errorf("pod-security.kubernetes.io/enforce = %q, want restricted", got)
	}
}

func TestEveryViolationIsReported(t *testing.T) {
	t.Parallel()
	bob := newUser(t, "bob", "team-web")
	ns := request("kube-everything", "Payments", "production", map[string]string{tierKey: "micro", netpolKey: "open", featuresKey: "gpu"})
	wantDenied(t, bob.client.Create(context.Background(), ns),
		"team-invalid", "tier-not-allowed-in-environment", "network-policy-not-allowed-in-environment",
		"feature-invalid", "name-environment-suffix", "name-reserved")
}

func TestAdminsMayCreateBareNamespaces(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	admins := map[string]*user{
		"system:masters":  userFromConfig(t, "admin", env.Config),
		"platform-admins": newUser(t, "carol", "platform-admins"),
	}
	for group, u := range admins {
		name := "bare-" + strings.ReplaceAll(group, ":", "-")
		if err := u.client.Create(ctx, namespace(name, nil, nil)); err != nil {
			t.Errorf("%s (%s) creating bare namespace %s: %v", u.name, group, name, err)
			continue
		}
		if got := get(t, name); len(got.Annotations) != 0 {
			t.Errorf("bare namespace %s was mutated: %v", name, got.Annotations)
		}
	}
}

func TestAdminMayChangeTeam(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	alice := newUser(t, "alice", "team-payments")
	carol := newUser(t, "carol", "platform-admins")
	if err := alice.client.Create(ctx, request("handover-dev", "payments", "development", nil)); err != nil {
		t.Fatal(err)
	}
	if err := carol.update(ctx, "handover-dev", func(ns *corev1.Namespace) { ns.Annotations[teamKey] = "web" }); err != nil {
		t.Fatalf("platform admin changing the team: %v", err)
	}
	got := get(t, "handover-dev")
	if got.Labels[teamKey] != "web" || got.Annotations[requestedByKey] != "alice" {
		t.Errorf("after the team change: labels %v, annotations %v; want team label web and requester alice kept", got.Labels, got.Annotations)
	}
}

func TestWarningsReachTheClient(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	bob := newUser(t, "bob", "team-web")
	ns := request("web-staging", "web", "staging", map[string]string{netpolKey: "open", "nsprov.io/teir": "large"})
	if err := bob.client.Create(ctx, ns); err != nil {
		t.Fatalf("bob creating web-staging: %v", err)
	}
	w := bob.warnings.take()
	want := []string{
		"tier medium costs $200 per month (4 CPU, 8Gi memory, 50Gi storage)",
		"network policy open in staging: no default deny; all traffic allowed; consider isolated or team",
	}
	for _, s := range want {
		if !slices.Contains(w, s) {
			t.Errorf("warnings %q lack %q", w, s)
		}
	}
	if !slices.ContainsFunc(w, func(s string) bool { return strings.HasPrefix(s, "annotation nsprov.io/teir is not used by nsprov") }) {
		t.Errorf("warnings %q do not flag the misspelt annotation", w)
	}

	// A tier change shows the old and the new cost, and re-mirrors the label.
	if err := bob.update(ctx, "web-staging", func(ns *corev1.Namespace) { ns.Annotations[tierKey] = "large" }); err != nil {
		t.Fatalf("bob changing the tier: %v", err)
	}
	change := "tier changes from medium to large: from $200 per month (4 CPU, 8Gi memory, 50Gi storage) to $400 per month (8 CPU, 16Gi memory, 100Gi storage)"
	if w := bob.warnings.take(); !slices.Contains(w, change) {
		t.Errorf("warnings %q lack %q", w, change)
	}
	if l := get(t, "web-staging").Labels[tierKey]; l != "large" {
		t.Errorf("tier label = %q after the change, want large", l)
	}
}

func TestDryRunWritesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	alice := newUser(t, "alice", "team-payments")
	ns := request("dryrun-dev", "payments", "development", nil)
	if err := alice.client.Create(ctx, ns, client.DryRunAll); err != nil {
		t.Fatalf("dry-run create: %v", err)
	}
	if ns.Annotations[requestedByKey] != "alice" || ns.Labels[tierKey] != "small" {
		t.Errorf("dry-run response lacks the mutation: annotations %v labels %v", ns.Annotations, ns.Labels)
	}
	if err := env.Client.Get(ctx, client.ObjectKey{Name: "dryrun-dev"}, &corev1.Namespace{}); !apierrors.IsNotFound(err) {
		t.Errorf("dry-run create stored the namespace (get: %v)", err)
	}
	bad := request("dryrun-prod", "payments", "production", map[string]string{netpolKey: "open"})
	wantDenied(t, alice.client.Create(ctx, bad, client.DryRunAll), "network-policy-not-allowed-in-environment")
}

func TestGenerateNameIsJudgedOnTheGeneratedName(t *testing.T) {
	t.Parallel()
	alice := newUser(t, "alice", "team-payments")
	ns := request("", "payments", "development", nil)
	ns.GenerateName = "payments-"
	// The mutating webhook sees no name yet; the validating webhook judges the
	// generated one, which cannot end with the environment's suffix.
	wantDenied(t, alice.client.Create(context.Background(), ns), "name-environment-suffix")
}

func TestNamespacesNsprovMustNotSeeSkipIt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// An admin's label change on a bare namespace is not sent to nsprov at all,
	// and neither is a kube-system service account's bare namespace.
	sa := newUser(t, "system:serviceaccount:kube-system:some-operator", "system:serviceaccounts", "system:serviceaccounts:kube-system")
	if err := sa.client.Create(ctx, namespace("operator-made", nil, nil)); err != nil {
		t.Fatalf("exempt service account creating a bare namespace: %v", err)
	}
	ns := get(t, "operator-made")
	ns.Labels["team"] = "x"
	if err := env.Client.Update(ctx, ns); err != nil {
		t.Fatalf("admin labelling a bare namespace: %v", err)
	}
	if got := get(t, "operator-made"); got.Labels["team"] != "x" {
		t.Errorf("label not stored: %v", got.Labels)
	}
	if d := decisions.about("operator-made"); len(d) != 0 {
		t.Errorf("nsprov was asked about operator-made %d times, want never: %+v", len(d), d)
	}
	// A bare namespace from a user who is not exempt does reach nsprov, and so
	// does any namespace that carries an nsprov.io/ label, even an admin's.
	bob := newUser(t, "bob", "team-web")
	wantDenied(t, bob.client.Create(ctx, namespace("bob-bare", nil, nil)), "request-required")
	wantDenied(t, env.Client.Create(ctx, namespace("admin-forged", nil, map[string]string{teamKey: "payments"})), "managed-metadata-forged")
	for _, name := range []string{"bob-bare", "admin-forged"} {
		if d := decisions.about(name); len(d) != 2 {
			t.Errorf("nsprov made %d decisions about %s, want 2 (mutate and validate): %+v", len(d), name, d)
		}
	}
}

func TestRequesterCannotBeRewritten(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	alice := newUser(t, "alice", "team-payments")
	if err := alice.client.Create(ctx, request("requester-dev", "payments", "development", nil)); err != nil {
		t.Fatal(err)
	}
	if err := alice.update(ctx, "requester-dev", func(ns *corev1.Namespace) {
		ns.Annotations[requestedByKey] = "mallory"
		ns.Annotations[tierKey] = "micro"
	}); err != nil {
		t.Fatalf("alice changing the tier: %v", err)
	}
	got := get(t, "requester-dev")
	if got.Annotations[requestedByKey] != "alice" || got.Annotations[tierKey] != "micro" {
		t.Errorf("after the update: annotations %v; want the tier changed and requester alice kept", got.Annotations)
	}
}

// TestNsprovWritesItsOwnMetadata checks that nsprov's controller may write
// the annotation it owns, which a requester may not.
func TestNsprovWritesItsOwnMetadata(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	alice := newUser(t, "alice", "team-payments")
	if err := alice.client.Create(ctx, request("owned-dev", "payments", "development", nil)); err != nil {
		t.Fatal(err)
	}
	// The controller, as nsprov's service account, annotates the namespace
	// through the webhooks.
	var ref string
	Eventually(t, 30*time.Second, "the controller's workflow annotation", func() error {
		if ref = get(t, "owned-dev").Annotations[workflowKey]; ref == "" {
			return fmt.Errorf("no %s yet", workflowKey)
		}
		return nil
	})
	// The requester cannot change it, but leaving it unchanged on an update
	// of her own is fine.
	wantDenied(t, alice.update(ctx, "owned-dev", func(ns *corev1.Namespace) { ns.Annotations[workflowKey] = "argo/forged" }), "managed-metadata-forged")
	if err := alice.update(ctx, "owned-dev", func(ns *corev1.Namespace) { ns.Annotations[tierKey] = "medium" }); err != nil {
		t.Fatalf("alice changing the tier of a namespace that carries %s: %v", workflowKey, err)
	}
}
