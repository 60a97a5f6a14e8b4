package envtest

import (
	"context"
	"fmt"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// BlockQuotas makes the API server refuse ResourceQuotas in namespace with a
// ValidatingAdmissionPolicy (message "quotas are blocked here by the test"),
// so the provisioning Workflow's quota step fails after Argo's retries of
// the step, as a cluster's own admission policy can make it fail. It returns
// once the API server enforces the policy; unblock lifts it (and runs when
// the test ends).
func BlockQuotas(t testing.TB, c client.Client, namespace string) (unblock func()) {
	t.Helper()
	ctx := context.Background()
	probe := "vap-probe-" + namespace
	policy := &admissionregistrationv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "block-quota-" + namespace},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: ptr.To(admissionregistrationv1.Fail),
			MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionregistrationv1.RuleWithOperations{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
					Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"resourcequotas"}},
				},
			}}},
			Validations: []admissionregistrationv1.Validation{{
				Expression: fmt.Sprintf("object.metadata.namespace != '%s' && object.metadata.name != '%s'", namespace, probe),
				Message:    "quotas are blocked here by the test",
			}},
		},
	}
	binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: policy.Name},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        policy.Name,
			ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
		},
	}
	for _, o := range []client.Object{policy, binding} {
		if err := c.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	// The API server takes a moment to load the policy: probe until it denies.
	Eventually(t, 30*time.Second, "the admission policy in force", func() error {
		q := &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: probe, Namespace: "default"}}
		if err := c.Create(ctx, q, client.DryRunAll); err == nil {
			return fmt.Errorf("probe quota still allowed")
		}
		return nil
	})
	lifted := false
	unblock = func() {
		if lifted {
			return
		}
		lifted = true
		for _, o := range []client.Object{binding, policy} {
			if err := c.Delete(ctx, o); client.IgnoreNotFound(err) != nil {
				t.Error(err)
			}
		}
		Eventually(t, 30*time.Second, "the admission policy lifted", func() error {
			q := &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: probe, Namespace: "default"}}
			return c.Create(ctx, q, client.DryRunAll)
		})
	}
	t.Cleanup(unblock)
	return unblock
}
