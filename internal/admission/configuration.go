package admission

import (
	"fmt"
	"strconv"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// ConfigurationOptions describe the webhook configurations that route
// Namespace requests to nsprov.
type ConfigurationOptions struct {
	// Name of both configuration objects.
	Name string
	// ServiceNamespace and ServiceName of the Service in front of nsprov.
	ServiceNamespace, ServiceName string
	// ServicePort of that Service.
	ServicePort int32
	// CABundle that signed nsprov's serving certificate; may be empty when
	// cert-manager's CA injector fills it in.
	CABundle []byte
	// FailurePolicy is Fail (the default) or Ignore.
	FailurePolicy admissionregistrationv1.FailurePolicyType
	// TimeoutSeconds the API server waits for nsprov (default 5).
	TimeoutSeconds int32
	// ExemptGroups and ExemptUsers may create bare namespaces without nsprov
	// seeing the request; any request that carries an nsprov.io/ annotation or
	// label is still sent to nsprov.
	ExemptGroups, ExemptUsers []string
}

// MatchConditionName names the condition that selects the requests nsprov
// must see.
const MatchConditionName = "nsprov-relevant"

// MatchExpression is the CEL expression of the match condition: the object,
// or the old object, carries an nsprov.io/ annotation or label, or the request
// creates a namespace and comes from a user outside the exempt users and
// groups. Everything else never reaches nsprov, so system components and
// admins keep working while nsprov is down.
func MatchExpression(exemptUsers, exemptGroups []string) string {
	carries := func(o string) string {
		return fmt.Sprintf("(has(%[1]s.metadata.annotations) && %[1]s.metadata.annotations.exists(k, k.startsWith('nsprov.io/'))) || "+
			"(has(%[1]s.metadata.labels) && %[1]s.metadata.labels.exists(k, k.startsWith('nsprov.io/')))", o)
	}
	return fmt.Sprintf("%s || (oldObject != null && (%s)) || "+
		"(request.operation == 'CREATE' && !(request.userInfo.username in %s) && "+
		"!(has(request.userInfo.groups) && request.userInfo.groups.exists(g, g in %s)))",
		carries("object"), carries("oldObject"), celList(exemptUsers), celList(exemptGroups))
}

func celList(items []string) string {
	quoted := make([]string, len(items))
	for i, s := range items {
		// A Go quoted string is a valid CEL string literal: CEL has the same
		// escapes (\", \\, \n, \xHH, \uHHHH, \UHHHHHHHH).
		quoted[i] = strconv.Quote(s)
	}
	return "[" + strings.Join(quoted, ", ") + "]"
}

// Configurations builds the mutating and validating webhook configurations.
func Configurations(o ConfigurationOptions) (*admissionregistrationv1.MutatingWebhookConfiguration, *admissionregistrationv1.ValidatingWebhookConfiguration) {
	if o.FailurePolicy == "" {
		o.FailurePolicy = admissionregistrationv1.Fail
	}
	if o.TimeoutSeconds == 0 {
		o.TimeoutSeconds = 5
	}
	client := func(path string) admissionregistrationv1.WebhookClientConfig {
		return admissionregistrationv1.WebhookClientConfig{
			Service: &admissionregistrationv1.ServiceReference{
				Namespace: o.ServiceNamespace, Name: o.ServiceName, Path: ptr.To(path), Port: ptr.To(o.ServicePort),
			},
			CABundle: o.CABundle,
		}
	}
	rules := []admissionregistrationv1.RuleWithOperations{{
		Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
		Rule: admissionregistrationv1.Rule{
			APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"namespaces"},
			Scope: ptr.To(admissionregistrationv1.ClusterScope),
		},
	}}
	match := []admissionregistrationv1.MatchCondition{{Name: MatchConditionName, Expression: MatchExpression(o.ExemptUsers, o.ExemptGroups)}}
	sideEffects := admissionregistrationv1.SideEffectClassNoneOnDryRun
	mutating := &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: o.Name},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:                    MutatingWebhookName,
			ClientConfig:            client(MutatePath),
			Rules:                   rules,
			FailurePolicy:           ptr.To(o.FailurePolicy),
			MatchPolicy:             ptr.To(admissionregistrationv1.Equivalent),
			SideEffects:             &sideEffects,
			TimeoutSeconds:          ptr.To(o.TimeoutSeconds),
			AdmissionReviewVersions: []string{"v1"},
			ReinvocationPolicy:      ptr.To(admissionregistrationv1.NeverReinvocationPolicy),
			MatchConditions:         match,
		}},
	}
	validating := &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: o.Name},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name:                    ValidatingWebhookName,
			ClientConfig:            client(ValidatePath),
			Rules:                   rules,
			FailurePolicy:           ptr.To(o.FailurePolicy),
			MatchPolicy:             ptr.To(admissionregistrationv1.Equivalent),
			SideEffects:             &sideEffects,
			TimeoutSeconds:          ptr.To(o.TimeoutSeconds),
			AdmissionReviewVersions: []string{"v1"},
			MatchConditions:         match,
		}},
	}
	return mutating, validating
}
