package admission

import (
	"reflect"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
)

// The CEL expression is not compiled here: k8s.io/apiserver's CEL library is
// in the module graph only through other modules and has no go.sum entries,
// so using it would add modules. The envtest suite runs it for real.

func TestConfigurations(t *testing.T) {
	tests := []struct {
		name        string
		opts        ConfigurationOptions
		wantFailure admissionregistrationv1.FailurePolicyType
		wantTimeout int32
	}{
		{
			name:        "defaults",
			opts:        ConfigurationOptions{Name: "nsprov", ServiceNamespace: "nsprov-system", ServiceName: "nsprov-webhook", ServicePort: 443},
			wantFailure: admissionregistrationv1.Fail,
			wantTimeout: 5,
		},
		{
			name: "explicit",
			opts: ConfigurationOptions{
				Name: "nsprov-test", ServiceNamespace: "ns", ServiceName: "svc", ServicePort: 9443, CABundle: []byte("CA"),
				FailurePolicy: admissionregistrationv1.Ignore, TimeoutSeconds: 10,
				ExemptUsers: []string{"system:admin"}, ExemptGroups: []string{"system:masters"},
			},
			wantFailure: admissionregistrationv1.Ignore,
			wantTimeout: 10,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mut, val := Configurations(tt.opts)
			if mut.Name != tt.opts.Name || val.Name != tt.opts.Name {
				t.Errorf("names %q %q, want %q", mut.Name, val.Name, tt.opts.Name)
			}
			if len(mut.Webhooks) != 1 || len(val.Webhooks) != 1 {
				t.Fatalf("%d mutating and %d validating webhooks, want 1 each", len(mut.Webhooks), len(val.Webhooks))
			}
			mw, vw := mut.Webhooks[0], val.Webhooks[0]
			if mw.Name != MutatingWebhookName || vw.Name != ValidatingWebhookName {
				t.Errorf("webhook names %q %q", mw.Name, vw.Name)
			}
			wantMatch := []admissionregistrationv1.MatchCondition{{
				Name:       MatchConditionName,
				Expression: MatchExpression(tt.opts.ExemptUsers, tt.opts.ExemptGroups),
			}}
			wantRules := []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
				Rule: admissionregistrationv1.Rule{
					APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"namespaces"},
					Scope: ptrTo(admissionregistrationv1.ClusterScope),
				},
			}}
			type common struct {
				path           string
				client         admissionregistrationv1.WebhookClientConfig
				rules          []admissionregistrationv1.RuleWithOperations
				failure        *admissionregistrationv1.FailurePolicyType
				match          *admissionregistrationv1.MatchPolicyType
				side           *admissionregistrationv1.SideEffectClass
				timeout        *int32
				reviewVersions []string
				conditions     []admissionregistrationv1.MatchCondition
			}
			for _, c := range []common{
				{MutatePath, mw.ClientConfig, mw.Rules, mw.FailurePolicy, mw.MatchPolicy, mw.SideEffects, mw.TimeoutSeconds, mw.AdmissionReviewVersions, mw.MatchConditions},
				{ValidatePath, vw.ClientConfig, vw.Rules, vw.FailurePolicy, vw.MatchPolicy, vw.SideEffects, vw.TimeoutSeconds, vw.AdmissionReviewVersions, vw.MatchConditions},
			} {
				svc := c.client.Service
				if svc == nil || svc.Namespace != tt.opts.ServiceNamespace || svc.Name != tt.opts.ServiceName ||
					svc.Path == nil || *svc.Path != c.path || svc.Port == nil || *svc.Port != tt.opts.ServicePort {
					t.Errorf("%s: service %+v", c.path, svc)
				}
				if c.client.URL != nil {
					t.Errorf("%s: URL %q set as well as the service", c.path, *c.client.URL)
				}
				if string(c.client.CABundle) != string(tt.opts.CABundle) {
					t.Errorf("%s: CA bundle %q", c.path, c.client.CABundle)
				}
				if !reflect.DeepEqual(c.rules, wantRules) {
					t.Errorf("%s: rules %+v", c.path, c.rules)
				}
				if c.failure == nil || *c.failure != tt.wantFailure {
					t.Errorf("%s: failurePolicy %v, want %s", c.path, c.failure, tt.wantFailure)
				}
				if c.match == nil || *c.match != admissionregistrationv1.Equivalent {
					t.Errorf("%s: matchPolicy %v, want Equivalent", c.path, c.match)
				}
				if c.side == nil || *c.side != admissionregistrationv1.SideEffectClassNoneOnDryRun {
					t.Errorf("%s: sideEffects %v, want NoneOnDryRun", c.path, c.side)
				}
				if c.timeout == nil || *c.timeout != tt.wantTimeout {
					t.Errorf("%s: timeoutSeconds %v, want %d", c.path, c.timeout, tt.wantTimeout)
				}
				if !reflect.DeepEqual(c.reviewVersions, []string{"v1"}) {
					t.Errorf("%s: admissionReviewVersions %v", c.path, c.reviewVersions)
				}
				if !reflect.DeepEqual(c.conditions, wantMatch) {
					t.Errorf("%s: matchConditions %+v, want %+v", c.path, c.conditions, wantMatch)
				}
			}
			if mw.ReinvocationPolicy == nil || *mw.ReinvocationPolicy != admissionregistrationv1.NeverReinvocationPolicy {
				t.Errorf("reinvocationPolicy %v, want Never", mw.ReinvocationPolicy)
			}
		})
	}
}

// The two configurations do not share pointers: editing one (as a Helm
// template or cert-manager's CA injector would) leaves the other alone.
func TestConfigurationsIndependent(t *testing.T) {
	mut, val := Configurations(ConfigurationOptions{Name: "nsprov", ServiceNamespace: "ns", ServiceName: "svc", ServicePort: 443})
	*mut.Webhooks[0].FailurePolicy = admissionregistrationv1.Ignore
	*mut.Webhooks[0].TimeoutSeconds = 30
	if *val.Webhooks[0].FailurePolicy != admissionregistrationv1.Fail || *val.Webhooks[0].TimeoutSeconds != 5 {
		t.Errorf("changing the mutating webhook changed the validating one: %v %v", *val.Webhooks[0].FailurePolicy, *val.Webhooks[0].TimeoutSeconds)
	}
}

func TestMatchExpression(t *testing.T) {
	tests := []struct {
		name          string
		users, groups []string
		wantUsers     string
		wantGroups    string
	}{
		{"no exemptions", nil, nil, "[]", "[]"},
		{"plain", []string{"system:admin"}, []string{"system:masters", "platform-admins"}, `["system:admin"]`, `["system:masters", "platform-admins"]`},
		{"quote", nil, []string{"o'brien"}, "[]", `["o'brien"]`},
		{"backslash then quote", []string{`dom\user`}, []string{`a\"b`}, `["dom\\user"]`, `["a\\\"b"]`},
		{"newline and control characters", nil, []string{"a\nb\x00"}, "[]", `["a\nb\x00"]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := MatchExpression(tt.users, tt.groups)
			wantUser := "!(request.userInfo.username in " + tt.wantUsers + ")"
			wantGroup := "request.userInfo.groups.exists(g, g in " + tt.wantGroups + ")"
			if !strings.Contains(got, wantUser) {
				t.Errorf("expression lacks %s:\n%s", wantUser, got)
			}
			if !strings.Contains(got, wantGroup) {
				t.Errorf("expression lacks %s:\n%s", wantGroup, got)
			}
			for _, o := range []string{"object", "oldObject"} {
				for _, field := range []string{"annotations", "labels"} {
					want := o + ".metadata." + field + ".exists(k, k.startsWith('nsprov.io/'))"
					if !strings.Contains(got, want) {
						t.Errorf("expression lacks %s", want)
					}
				}
			}
			if !strings.Contains(got, "request.operation == 'CREATE'") {
				t.Errorf("expression does not limit bare namespaces to CREATE:\n%s", got)
			}
			if strings.Count(got, "(") != strings.Count(got, ")") {
				t.Errorf("unbalanced parentheses:\n%s", got)
			}
			// Every CEL string literal is closed.
			if n := celStringLiterals(t, got); n < 4 {
				t.Errorf("%d string literals, want at least 4:\n%s", n, got)
			}
		})
	}
}

// celStringLiterals scans single- and double-quoted CEL strings with
// backslash escapes and fails when one is not closed or holds a raw newline.
func celStringLiterals(t *testing.T, expr string) int {
	t.Helper()
	n := 0
	for i := 0; i < len(expr); i++ {
		quote := expr[i]
		if quote != '\'' && quote != '"' {
			continue
		}
		closed := false
		for i++; i < len(expr); i++ {
			if expr[i] == '\\' {
				i++
				continue
			}
			if expr[i] == '\n' {
				t.Fatalf("raw newline inside a string literal in %q", expr)
			}
			if expr[i] == quote {
				closed = true
				break
			}
		}
		if !closed {
			t.Fatalf("unterminated string literal in %s", expr)
		}
		n++
	}
	return n
}

func ptrTo[T any](v T) *T { return &v }
