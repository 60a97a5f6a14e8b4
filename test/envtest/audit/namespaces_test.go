package audit

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nsprov/nsprov/cmd/webhook/app"
	"github.com/nsprov/nsprov/internal/audit"
	"github.com/nsprov/nsprov/internal/contract"
	"github.com/nsprov/nsprov/test/envtest"
)

// Tightening a rule in the served policy directory makes an existing
// namespace that breaks it appear in nsprov-namespace-audit, and loosening
// it again makes it disappear.
func TestTighteningAPolicyShowsExistingNamespaces(t *testing.T) {
	ctx := context.Background()
	alice := aliceClient(t)
	const name = "tight-medium-dev"
	if err := alice.Create(ctx, requested(name, "medium")); err != nil {
		t.Fatalf("creating %s: %v", name, err)
	}

	cfg, err := env.User(envtest.ControllerUser, "system:serviceaccounts", "system:masters")
	if err != nil {
		t.Fatal(err)
	}
	auditor, err := audit.NewAuditor(cfg, env.Policies, audit.AuditorOptions{
		Username: envtest.ControllerUser, Logger: bufferLogger(&sinkLog),
	})
	if err != nil {
		t.Fatal(err)
	}
	actx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { _ = auditor.Start(actx) })
	defer func() { cancel(); wg.Wait() }()

	// violates waits for an audit of the active revision and reports whether
	// the namespace is in it, with which rules.
	audited := func(what string) []string {
		t.Helper()
		var rules []string
		envtest.Eventually(t, 30*time.Second, what, func() error {
			rev := env.Policies.Bundle().Revision
			r := getReport(ctx, t, audit.NamespaceAuditReportName)
			if r == nil || r.Annotations[contract.ReportPolicyRevisionAnnotation] != rev {
				return fmt.Errorf("no audit of revision %s yet", rev)
			}
			rules = nil
			for _, res := range r.Results {
				if res.Subjects[0].Name != name {
					continue
				}
				rules = append(rules, res.Rule)
				if res.Result != "fail" || res.Policy != res.Rule || res.Properties[audit.PropTeam] != "payments" ||
					res.Properties[audit.PropRequestedBy] != "alice" || res.Subjects[0].UID == "" || res.Description == "" {
					return fmt.Errorf("result %+v", res)
				}
			}
			if r.Summary.Fail != len(r.Results) {
				return fmt.Errorf("summary %+v for %d results", r.Summary, len(r.Results))
			}
			return nil
		})
		return rules
	}
	if rules := audited("the first audit"); len(rules) != 0 {
		t.Fatalf("%s breaks %v before the policy changed", name, rules)
	}

	// Development no longer allows medium.
	file := filepath.Join(policyDir, "config", "environments.yaml")
	original, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	const loose, tight = "allowed_tiers: [micro, small, medium]", "allowed_tiers: [micro, small]"
	if strings.Count(string(original), loose) != 1 {
		t.Fatalf("%s does not list development's tiers as %q", file, loose)
	}
	defer func() { _ = os.WriteFile(file, original, 0o644) }()
	before := env.Policies.Bundle().Revision
	if err := os.WriteFile(file, []byte(strings.Replace(string(original), loose, tight, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	envtest.Eventually(t, 30*time.Second, "the tightened policy to load", func() error {
		if env.Policies.Bundle().Revision == before {
			return fmt.Errorf("still revision %s", before)
		}
		return nil
	})
	if rules := audited("the audit of the tightened policy"); len(rules) != 1 || rules[0] != "tier-not-allowed-in-environment" {
		t.Fatalf("%s breaks %v under the tightened policy, want [tier-not-allowed-in-environment]", name, rules)
	}

	// nsprov audit --existing lists it.
	kc, err := env.UserKubeconfig("auditor", "system:masters")
	if err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if code := app.Run(ctx, []string{"audit", "--existing", "--kubeconfig", writeKubeconfig(t, kc)}, strings.NewReader(""), &out, &errOut); code != 0 {
		t.Fatalf("nsprov audit --existing exited %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), name) || !strings.Contains(out.String(), "tier-not-allowed-in-environment") {
		t.Errorf("nsprov audit --existing printed:\n%s", out.String())
	}

	// Loosen it again: the namespace disappears.
	if err := os.WriteFile(file, original, 0o644); err != nil {
		t.Fatal(err)
	}
	envtest.Eventually(t, 30*time.Second, "the original policy to load", func() error {
		if env.Policies.Bundle().Revision != before {
			return fmt.Errorf("revision %s, want %s", env.Policies.Bundle().Revision, before)
		}
		return nil
	})
	if rules := audited("the audit of the original policy"); len(rules) != 0 {
		t.Fatalf("%s still breaks %v", name, rules)
	}
}
