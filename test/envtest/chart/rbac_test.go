package chart

import (
	"context"
	"path/filepath"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	crenvtest "sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/nsprov/nsprov/test/envtest/chartrender"
)

// TestRBAC proves with SubjectAccessReviews that nsprov's and the
// provisioner's service accounts, and the requester groups, may do what they
// need and are refused a sample of what they must not.
func TestRBAC(t *testing.T) {
	ctx := context.Background()
	values, err := chartrender.ValuesFile(filepath.Join(chartrender.ChartDir(), "ci", "self-managed-values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	install(ctx, t, render(t, values), false)
	requester := crenvtest.User{Name: "carol", Groups: []string{"team-web"}}
	stranger := crenvtest.User{Name: "mallory", Groups: []string{"somebody-else"}}

	type access struct {
		verb, group, resource, subresource, namespace, name string
	}
	tests := []struct {
		who   crenvtest.User
		what  access
		allow bool
	}{
		// nsprov: namespaces and their status, events, its Workflows, the
		// template, reports, the lease, its certificate and webhooks.
		{nsprovSA, access{verb: "watch", resource: "namespaces"}, true},
		{nsprovSA, access{verb: "patch", resource: "namespaces", name: "payments-dev"}, true},
		{nsprovSA, access{verb: "update", resource: "namespaces", subresource: "status", name: "payments-dev"}, true},
		{nsprovSA, access{verb: "create", resource: "events", namespace: "payments-dev"}, true},
		{nsprovSA, access{verb: "create", group: "events.k8s.io", resource: "events", namespace: releaseNamespace}, true},
		{nsprovSA, access{verb: "create", group: "argoproj.io", resource: "workflows", namespace: "argo"}, true},
		{nsprovSA, access{verb: "delete", group: "argoproj.io", resource: "workflows", namespace: "argo"}, true},
		{nsprovSA, access{verb: "watch", group: "argoproj.io", resource: "workflowtemplates", namespace: "argo"}, true},
		{nsprovSA, access{verb: "update", group: "openreports.io", resource: "clusterreports", name: "nsprov-admission-denials"}, true},
		{nsprovSA, access{verb: "update", group: "coordination.k8s.io", resource: "leases", namespace: releaseNamespace, name: "nsprov-controller"}, true},
		{nsprovSA, access{verb: "create", resource: "secrets", namespace: releaseNamespace}, true},
		{nsprovSA, access{verb: "update", resource: "secrets", namespace: releaseNamespace, name: "nsprov-webhook-tls"}, true},
		{nsprovSA, access{verb: "update", group: "admissionregistration.k8s.io", resource: "validatingwebhookconfigurations", name: "nsprov"}, true},
		{nsprovSA, access{verb: "update", group: "admissionregistration.k8s.io", resource: "mutatingwebhookconfigurations", name: "nsprov"}, true},
		// ... and nothing more.
		{nsprovSA, access{verb: "get", resource: "secrets"}, false},
		{nsprovSA, access{verb: "list", resource: "secrets", namespace: releaseNamespace}, false},
		{nsprovSA, access{verb: "get", resource: "secrets", namespace: releaseNamespace, name: "another-secret"}, false},
		{nsprovSA, access{verb: "get", resource: "secrets", namespace: "kube-system", name: "nsprov-webhook-tls"}, false},
		{nsprovSA, access{verb: "create", group: "argoproj.io", resource: "workflows", namespace: "payments-dev"}, false},
		{nsprovSA, access{verb: "create", group: "argoproj.io", resource: "workflows"}, false},
		{nsprovSA, access{verb: "update", group: "argoproj.io", resource: "workflowtemplates", namespace: "argo", name: "nsprov-provision"}, false},
		{nsprovSA, access{verb: "update", group: "admissionregistration.k8s.io", resource: "validatingwebhookconfigurations", name: "kyverno"}, false},
		{nsprovSA, access{verb: "delete", resource: "namespaces", name: "payments-dev"}, false},
		{nsprovSA, access{verb: "escalate", group: "rbac.authorization.k8s.io", resource: "clusterroles", name: "edit"}, false},
		{nsprovSA, access{verb: "create", resource: "pods", namespace: releaseNamespace}, false},
		// The provisioner: exactly what the template's steps apply, and
		// argoexec's task results.
		{provisionerSA, access{verb: "create", resource: "resourcequotas", namespace: "payments-dev"}, true},
		{provisionerSA, access{verb: "patch", resource: "limitranges", namespace: "payments-dev", name: "nsprov-limits"}, true},
		{provisionerSA, access{verb: "create", group: "rbac.authorization.k8s.io", resource: "rolebindings", namespace: "payments-dev"}, true},
		{provisionerSA, access{verb: "list", group: "rbac.authorization.k8s.io", resource: "rolebindings", namespace: "payments-dev"}, true},
		{provisionerSA, access{verb: "delete", group: "rbac.authorization.k8s.io", resource: "rolebindings", namespace: "payments-dev", name: "nsprov-team-view"}, true},
		{provisionerSA, access{verb: "bind", group: "rbac.authorization.k8s.io", resource: "clusterroles", name: "edit"}, true},
		{provisionerSA, access{verb: "delete", group: "networking.k8s.io", resource: "networkpolicies", namespace: "payments-dev", name: "nsprov-default-deny"}, true},
		{provisionerSA, access{verb: "patch", resource: "namespaces", name: "payments-dev"}, true},
		{provisionerSA, access{verb: "create", group: "argoproj.io", resource: "workflowtaskresults", namespace: "argo"}, true},
		{provisionerSA, access{verb: "patch", group: "argoproj.io", resource: "workflowtaskresults", namespace: "argo"}, true},
		// ... and nothing more.
		{provisionerSA, access{verb: "bind", group: "rbac.authorization.k8s.io", resource: "clusterroles", name: "cluster-admin"}, false},
		{provisionerSA, access{verb: "bind", group: "rbac.authorization.k8s.io", resource: "clusterroles", name: "admin"}, false},
		{provisionerSA, access{verb: "escalate", group: "rbac.authorization.k8s.io", resource: "clusterroles", name: "edit"}, false},
		{provisionerSA, access{verb: "create", group: "rbac.authorization.k8s.io", resource: "clusterrolebindings"}, false},
		{provisionerSA, access{verb: "deletecollection", group: "rbac.authorization.k8s.io", resource: "rolebindings", namespace: "payments-dev"}, false},
		{provisionerSA, access{verb: "delete", group: "rbac.authorization.k8s.io", resource: "clusterrolebindings", name: "cluster-admin"}, false},
		{provisionerSA, access{verb: "get", resource: "secrets", namespace: "payments-dev"}, false},
		{provisionerSA, access{verb: "delete", resource: "namespaces", name: "payments-dev"}, false},
		{provisionerSA, access{verb: "delete", resource: "resourcequotas", namespace: "payments-dev", name: "nsprov-quota"}, false},
		{provisionerSA, access{verb: "create", group: "argoproj.io", resource: "workflowtaskresults", namespace: "payments-dev"}, false},
		{provisionerSA, access{verb: "create", group: "argoproj.io", resource: "workflows", namespace: "argo"}, false},
		// Requesters: create namespaces, follow their provisioning.
		{requester, access{verb: "create", resource: "namespaces"}, true},
		{requester, access{verb: "list", resource: "namespaces"}, true},
		{requester, access{verb: "watch", group: "argoproj.io", resource: "workflows", namespace: "argo"}, true},
		{requester, access{verb: "list", group: "openreports.io", resource: "clusterreports"}, true},
		{requester, access{verb: "delete", resource: "namespaces", name: "payments-dev"}, false},
		{requester, access{verb: "create", group: "argoproj.io", resource: "workflows", namespace: "argo"}, false},
		{requester, access{verb: "get", resource: "secrets", namespace: "argo"}, false},
		{stranger, access{verb: "create", resource: "namespaces"}, false},
	}
	for _, tc := range tests {
		a := tc.what
		name := tc.who.Name + " " + a.verb + " " + a.group + "/" + a.resource
		if a.subresource != "" {
			name += "/" + a.subresource
		}
		name += " " + a.namespace + "/" + a.name
		t.Run(name, func(t *testing.T) {
			sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
				User: tc.who.Name, Groups: append(tc.who.Groups, "system:authenticated"),
				ResourceAttributes: &authorizationv1.ResourceAttributes{
					Verb: a.verb, Group: a.group, Resource: a.resource, Subresource: a.subresource, Namespace: a.namespace, Name: a.name,
				},
			}}
			if err := admin.Create(ctx, sar); err != nil {
				t.Fatal(err)
			}
			if sar.Status.Allowed != tc.allow {
				t.Errorf("allowed = %v, want %v (%s)", sar.Status.Allowed, tc.allow, sar.Status.Reason)
			}
		})
	}
}
