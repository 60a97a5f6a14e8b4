package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/nsprov/nsprov/internal/contract"
)

// probeRule is the rule the probe request breaks whoever sends it: its name
// starts with the reserved prefix nsprov-.
const probeRule = "name-reserved"

// WebhooksOptions are the flags of `nsprov webhooks`, the commands the
// chart's hooks run: they talk to the API server, as the pod's service
// account, about nsprov's own webhook configurations.
type WebhooksOptions struct {
	// Kubeconfig is the kubeconfig file to use; empty uses $KUBECONFIG, the
	// in-cluster configuration or ~/.kube/config, in that order.
	Kubeconfig string
	// Configuration names the mutating and the validating webhook
	// configuration.
	Configuration string
	// Timeout bounds how long activate waits for nsprov to answer.
	Timeout time.Duration
	// FailurePolicy is what activate sets once nsprov answers.
	FailurePolicy string
	// AsUser and AsGroup are the team member test impersonates for the
	// request nsprov must admit; Team is her team.
	AsUser, AsGroup, Team string
}

// AddFlags binds the options to a flag set.
func (o *WebhooksOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, the in-cluster configuration, or ~/.kube/config)")
	fs.StringVar(&o.Configuration, "webhook-configuration", "nsprov", "name of nsprov's mutating and validating webhook configuration")
}

// Validate checks the options.
func (o *WebhooksOptions) Validate() error {
	if o.Configuration == "" {
		return errors.New("--webhook-configuration must not be empty")
	}
	return nil
}

func newWebhooksCommand(s streams) *cobra.Command {
	o := &WebhooksOptions{}
	cmd := &cobra.Command{
		Use:   "webhooks",
		Short: "Check, activate and remove nsprov's webhook configurations (the chart's hooks and helm test run these)",
	}
	o.AddFlags(cmd.PersistentFlags())

	activate := &cobra.Command{
		Use:   "activate",
		Short: "Wait until nsprov answers the API server, then set the webhooks' failurePolicy",
		Long: "Send server-side dry runs of a namespace nsprov must deny (rule " + probeRule + ") until the API server " +
			"answers with nsprov's denial, which proves a replica answers through the webhook configuration, then set " +
			"the failurePolicy of every webhook of both configurations. The chart installs them with Ignore and runs " +
			"this after each install and upgrade, so requests never fail because nsprov is not running yet.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Validate(); err != nil {
				return usageError(err)
			}
			if o.FailurePolicy != string(admissionregistrationv1.Fail) && o.FailurePolicy != string(admissionregistrationv1.Ignore) {
				return usageError(fmt.Errorf("--failure-policy %q is not known; use Fail or Ignore", o.FailurePolicy))
			}
			return runActivate(cmd.Context(), o, s)
		},
	}
	activate.Flags().StringVar(&o.FailurePolicy, "failure-policy", "Fail", "the failurePolicy to set once nsprov answers: Fail or Ignore")
	activate.Flags().DurationVar(&o.Timeout, "timeout", 5*time.Minute, "how long to wait for nsprov to answer")

	remove := &cobra.Command{
		Use:   "remove",
		Short: "Delete both webhook configurations (the chart runs this before an uninstall deletes nsprov's pods)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Validate(); err != nil {
				return usageError(err)
			}
			return runRemove(cmd.Context(), o, s)
		},
	}

	test := &cobra.Command{
		Use:   "test",
		Short: "Smoke test: a dry run nsprov must deny with a known rule, and one it must admit",
		Long: "Send two server-side dry runs (nothing is created): a namespace nsprov must deny with rule " + probeRule +
			", as the caller, and a namespace for --team that nsprov must admit and mutate, as --as-user in --as-group " +
			"(impersonated; the caller needs the impersonate permission for exactly them). `helm test` runs this.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Validate(); err != nil {
				return usageError(err)
			}
			if o.AsUser == "" || o.AsGroup == "" || o.Team == "" {
				return usageError(errors.New("--as-user, --as-group and --team must not be empty"))
			}
			return runWebhookTest(cmd.Context(), o, s)
		},
	}
	test.Flags().StringVar(&o.AsUser, "as-user", "nsprov-smoke-test", "the requester impersonated for the request nsprov must admit")
	test.Flags().StringVar(&o.AsGroup, "as-group", "team-nsprov-smoke", "her team's group (the policy's team_group for --team)")
	test.Flags().StringVar(&o.Team, "team", "nsprov-smoke", "the team of the request nsprov must admit")

	cmd.AddCommand(activate, remove, test)
	return cmd
}

func (o *WebhooksOptions) config() (*rest.Config, error) {
	var (
		cfg *rest.Config
		err error
	)
	if o.Kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", o.Kubeconfig)
	} else {
		cfg, err = ctrl.GetConfig()
	}
	if err != nil {
		return nil, usageError(fmt.Errorf("no Kubernetes API configuration: %w; pass --kubeconfig", err))
	}
	return cfg, nil
}

// suffix is a random name suffix, so that parallel probes never collide.
func suffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// probeDenied sends a server-side dry run of a namespace nsprov must deny
// and returns nil when the API server answers with nsprov's denial naming
// probeRule.
func probeDenied(ctx context.Context, cs kubernetes.Interface) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: "nsprov-probe-" + suffix() + "-dev",
		Annotations: map[string]string{
			contract.TeamAnnotation: "nsprov-probe", contract.EnvironmentAnnotation: "development",
		},
	}}
	_, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err == nil {
		return errors.New("the API server admitted a namespace nsprov must deny: nsprov's webhooks did not answer")
	}
	if !strings.Contains(err.Error(), "denied the request") || !strings.Contains(err.Error(), probeRule+":") {
		return fmt.Errorf("the API server did not answer with nsprov's denial (%s): %w", probeRule, err)
	}
	return nil
}

func runActivate(ctx context.Context, o *WebhooksOptions, s streams) error {
	cfg, err := o.config()
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	for {
		err := probeDenied(ctx, cs)
		if err == nil {
			break
		}
		fmt.Fprintf(s.err, "waiting for nsprov to answer: %v\n", err)
		select {
		case <-ctx.Done():
			return fmt.Errorf("nsprov did not answer within %s (the webhooks keep failurePolicy Ignore): %w", o.Timeout, err)
		case <-time.After(2 * time.Second):
		}
	}
	fmt.Fprintf(s.out, "nsprov answers: a dry run was denied with %s\n", probeRule)
	policy := admissionregistrationv1.FailurePolicyType(o.FailurePolicy)
	if err := SetWebhookFailurePolicy(ctx, cs, o.Configuration, policy); err != nil {
		return err
	}
	_, err = fmt.Fprintf(s.out, "webhook configurations %s: failurePolicy %s\n", o.Configuration, policy)
	return err
}

// SetWebhookFailurePolicy sets policy on every webhook of the mutating and
// the validating webhook configuration named configuration: what `nsprov
// webhooks activate` does once nsprov answers (and `make dev` after it).
func SetWebhookFailurePolicy(ctx context.Context, cs kubernetes.Interface, configuration string, policy admissionregistrationv1.FailurePolicyType) error {
	adm := cs.AdmissionregistrationV1()
	err := retryConflicts(func() error {
		m, err := adm.MutatingWebhookConfigurations().Get(ctx, configuration, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for i := range m.Webhooks {
			m.Webhooks[i].FailurePolicy = &policy
		}
		_, err = adm.MutatingWebhookConfigurations().Update(ctx, m, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("setting the failurePolicy of MutatingWebhookConfiguration %s: %w", configuration, err)
	}
	err = retryConflicts(func() error {
		v, err := adm.ValidatingWebhookConfigurations().Get(ctx, configuration, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for i := range v.Webhooks {
			v.Webhooks[i].FailurePolicy = &policy
		}
		_, err = adm.ValidatingWebhookConfigurations().Update(ctx, v, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		return fmt.Errorf("setting the failurePolicy of ValidatingWebhookConfiguration %s: %w", configuration, err)
	}
	return nil
}

func retryConflicts(f func() error) error {
	var err error
	for range 5 {
		if err = f(); !apierrors.IsConflict(err) {
			return err
		}
	}
	return err
}

func runRemove(ctx context.Context, o *WebhooksOptions, s streams) error {
	cfg, err := o.config()
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	adm := cs.AdmissionregistrationV1()
	for kind, del := range map[string]func(context.Context, string, metav1.DeleteOptions) error{
		"MutatingWebhookConfiguration":   adm.MutatingWebhookConfigurations().Delete,
		"ValidatingWebhookConfiguration": adm.ValidatingWebhookConfigurations().Delete,
	} {
		err := del(ctx, o.Configuration, metav1.DeleteOptions{})
		switch {
		case apierrors.IsNotFound(err):
			fmt.Fprintf(s.out, "%s %s: already gone\n", kind, o.Configuration)
		case err != nil:
			return fmt.Errorf("deleting %s %s: %w", kind, o.Configuration, err)
		default:
			fmt.Fprintf(s.out, "%s %s: deleted\n", kind, o.Configuration)
		}
	}
	return nil
}

func runWebhookTest(ctx context.Context, o *WebhooksOptions, s streams) error {
	cfg, err := o.config()
	if err != nil {
		return err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	if err := probeDenied(ctx, cs); err != nil {
		return &exitError{code: ExitDenied, err: fmt.Errorf("FAIL deny: %w", err)}
	}
	fmt.Fprintf(s.out, "PASS deny: a dry run of a namespace named nsprov-* was denied with %s\n", probeRule)

	as := rest.CopyConfig(cfg)
	as.Impersonate = rest.ImpersonationConfig{UserName: o.AsUser, Groups: []string{o.AsGroup}}
	asCS, err := kubernetes.NewForConfig(as)
	if err != nil {
		return err
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name: "smoke-" + suffix() + "-dev",
		Annotations: map[string]string{
			contract.TeamAnnotation: o.Team, contract.EnvironmentAnnotation: "development",
		},
	}}
	got, err := asCS.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		return &exitError{code: ExitDenied, err: fmt.Errorf("FAIL allow: the dry run of %s for team %s as %s was refused: %w", ns.Name, o.Team, o.AsUser, err)}
	}
	if got.Annotations[contract.RequestedByAnnotation] != o.AsUser || got.Labels[contract.TeamLabel] != o.Team {
		return &exitError{code: ExitDenied, err: fmt.Errorf("FAIL allow: the dry run of %s was admitted but not mutated by nsprov (annotations %v, labels %v)", ns.Name, got.Annotations, got.Labels)}
	}
	_, err = fmt.Fprintf(s.out, "PASS allow: a dry run for team %s as %s was admitted and mutated by nsprov (requested-by %s)\n", o.Team, o.AsUser, o.AsUser)
	return err
}
