package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/nsprov/nsprov/internal/contract"
)

// Values of --dry-run, as kubectl spells them.
const (
	dryRunNone   = "none"
	dryRunClient = "client"
	dryRunServer = "server"
)

// RequestOptions are the flags of `kubectl nsprov request`: the request
// annotations of the Namespace to create.
type RequestOptions struct {
	// Name is the namespace to request (the argument).
	Name string
	// Team is nsprov.io/team (required).
	Team string
	// Environment is nsprov.io/environment (required).
	Environment string
	// Tier is nsprov.io/tier; empty leaves the environment's default.
	Tier string
	// NetworkPolicy is nsprov.io/network-policy; empty leaves the default.
	NetworkPolicy string
	// Features are nsprov.io/features, joined with commas.
	Features []string
	// DryRun is none, client (print the Namespace, send nothing) or server
	// (the API server and nsprov decide, nothing is stored).
	DryRun string
	// Output is -o: json or yaml prints the Namespace the server returned.
	Output string
}

// AddFlags binds the options to a flag set.
func (o *RequestOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Team, "team", "", "the team that owns the namespace (nsprov.io/team; required)")
	fs.StringVar(&o.Environment, "environment", "", "development, staging or production (nsprov.io/environment; required)")
	fs.StringVar(&o.Tier, "tier", "", "micro, small, medium or large (nsprov.io/tier; default: the environment's)")
	fs.StringVar(&o.NetworkPolicy, "network-policy", "", "isolated, team or open (nsprov.io/network-policy; default: isolated)")
	fs.StringSliceVar(&o.Features, "features", nil, "features to enable, comma-separated or repeated: istio, monitoring-enhanced (nsprov.io/features)")
	fs.StringVar(&o.DryRun, "dry-run", dryRunNone, "none, server (nsprov and the API server decide; nothing is stored) or client (print the Namespace; nothing is sent)")
	addOutputFlag(fs, &o.Output)
}

// Validate checks the options. The values of the annotations are nsprov's
// policy's to judge (its denial says what is allowed); only what the API
// server would reject before asking nsprov is checked here.
func (o *RequestOptions) Validate() error {
	if errs := validation.IsDNS1123Label(o.Name); len(errs) > 0 {
		return fmt.Errorf("namespace name %q is not valid: %s", o.Name, strings.Join(errs, "; "))
	}
	if o.Team == "" {
		return errors.New("--team is required: the team that owns the namespace, for example --team payments")
	}
	if o.Environment == "" {
		return errors.New("--environment is required: development, staging or production")
	}
	switch o.DryRun {
	case dryRunNone, dryRunClient, dryRunServer:
	default:
		return fmt.Errorf("--dry-run=%q: use none, server or client", o.DryRun)
	}
	return validateOutput(o.Output)
}

// Namespace is the Namespace the options request.
func (o *RequestOptions) Namespace() *corev1.Namespace {
	a := map[string]string{
		contract.TeamAnnotation:        o.Team,
		contract.EnvironmentAnnotation: o.Environment,
	}
	if o.Tier != "" {
		a[contract.TierAnnotation] = o.Tier
	}
	if o.NetworkPolicy != "" {
		a[contract.NetworkPolicyAnnotation] = o.NetworkPolicy
	}
	var features []string
	for _, f := range o.Features {
		if f = strings.TrimSpace(f); f != "" {
			features = append(features, f)
		}
	}
	if len(features) > 0 {
		a[contract.FeaturesAnnotation] = strings.Join(features, ",")
	}
	return &corev1.Namespace{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
		ObjectMeta: metav1.ObjectMeta{Name: o.Name, Annotations: a},
	}
}

func newRequestCommand(s streams, co *ClientOptions) *cobra.Command {
	o := &RequestOptions{}
	cmd := &cobra.Command{
		Use:   "request NAME --team TEAM --environment ENV",
		Short: "Request a namespace: create it with nsprov's request annotations and show the policy's answer",
		Long: "Create the Namespace NAME with nsprov's request annotations, as you (your kubeconfig's identity). " +
			"nsprov's policy decides at once: the command prints its warnings, and when it denies the request, every " +
			"rule broken with its ID and how to fix it (exit code 1). Once created, the namespace is provisioned; " +
			"follow it with `status NAME --watch`. --dry-run=server asks for the decision without creating anything.",
		Example: "  kubectl nsprov request payments-dev --team payments --environment development\n" +
			"  kubectl nsprov request payments-prod --team payments --environment production --tier large \\\n" +
			"      --network-policy team --features monitoring-enhanced --dry-run=server",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Name = args[0]
			if err := o.Validate(); err != nil {
				return usageError(err)
			}
			return runRequest(cmd.Context(), o, co, s)
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

// warningCollector keeps the warnings the API server returns (nsprov's
// policy warnings among them), in order, without duplicates.
type warningCollector struct {
	mu       sync.Mutex
	warnings []string
}

// HandleWarningHeaderWithContext implements rest.WarningHandlerWithContext.
func (w *warningCollector) HandleWarningHeaderWithContext(_ context.Context, code int, _ string, text string) {
	if code != 299 || text == "" {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, seen := range w.warnings {
		if seen == text {
			return
		}
	}
	w.warnings = append(w.warnings, text)
}

func (w *warningCollector) list() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.warnings...)
}

func runRequest(ctx context.Context, o *RequestOptions, co *ClientOptions, s streams) error {
	ns := o.Namespace()
	if o.DryRun == dryRunClient {
		if o.Output == outputText {
			return printStructured(s.out, outputYAML, ns)
		}
		return printStructured(s.out, o.Output, ns)
	}
	cfg, err := co.RESTConfig()
	if err != nil {
		return err
	}
	warnings := &warningCollector{}
	cfg.WarningHandler = nil
	cfg.WarningHandlerWithContext = warnings
	c, err := newPluginClient(cfg)
	if err != nil {
		return err
	}
	var opts []client.CreateOption
	if o.DryRun == dryRunServer {
		opts = append(opts, client.DryRunAll)
	}
	err = c.Create(ctx, ns, opts...)
	writeWarnings(s.err, warnings.list())
	if err != nil {
		return requestFailed(s.err, o.Name, o.DryRun == dryRunServer, err)
	}
	if o.Output != outputText {
		ns.SetManagedFields(nil)
		return printStructured(s.out, o.Output, ns)
	}
	if o.DryRun == dryRunServer {
		_, err = fmt.Fprintf(s.out, "namespace/%s allowed (server dry run: nothing was created)\n", ns.Name)
		return err
	}
	_, err = fmt.Fprintf(s.out, "namespace/%s created\nFollow its provisioning: kubectl nsprov status %s --watch\n", ns.Name, ns.Name)
	return err
}

// writeWarnings prints the server's warnings as kubectl does.
func writeWarnings(w io.Writer, warnings []string) {
	for _, text := range warnings {
		fmt.Fprintf(w, "Warning: %s\n", text)
	}
}

// refusal is a refused request as the API server reports it: nsprov's
// webhook names each broken rule in the status causes (type: the rule ID,
// message: what is wrong and how to fix it); other refusals (RBAC, the
// chart's admission policies, an existing namespace) have a message only.
type refusal struct {
	// Message is the API server's message.
	Message string `json:"message"`
	// Violations are the rules broken, when nsprov's policy denied.
	Violations []ruleViolation `json:"violations,omitempty"`
}

// ruleViolation is one rule a request broke.
type ruleViolation struct {
	// Rule is the rule ID.
	Rule string `json:"rule"`
	// Message says what is wrong and how to fix it.
	Message string `json:"message"`
}

// refusalOf reads the violations of a refused request from its status.
func refusalOf(err error) refusal {
	d := refusal{Message: err.Error()}
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return d
	}
	st := status.Status()
	d.Message = st.Message
	if st.Details == nil {
		return d
	}
	for _, c := range st.Details.Causes {
		// The webhook's causes carry a rule ID as their type; the API
		// server's own causes (FieldValueInvalid, ...) name a field.
		if c.Type == "" || c.Field != "" {
			continue
		}
		d.Violations = append(d.Violations, ruleViolation{Rule: string(c.Type), Message: c.Message})
	}
	return d
}

// requestFailed prints why the request was refused and returns the error
// the command exits with: ExitDenied for a refusal, the error itself
// otherwise.
func requestFailed(w io.Writer, name string, dryRun bool, err error) error {
	switch {
	case apierrors.IsAlreadyExists(err):
		return &exitError{code: ExitDenied, err: fmt.Errorf("namespace %s already exists; see it with: kubectl nsprov status %s", name, name)}
	case apierrors.IsForbidden(err), apierrors.IsInvalid(err), apierrors.IsBadRequest(err):
	default:
		return fmt.Errorf("requesting namespace %s: %w", name, err)
	}
	d := refusalOf(err)
	if len(d.Violations) == 0 {
		return &exitError{code: ExitDenied, err: fmt.Errorf("namespace %s was refused: %s", name, d.Message)}
	}
	fmt.Fprintf(w, "namespace/%s denied by nsprov's policy (%d rule(s) broken):\n", name, len(d.Violations))
	for _, v := range d.Violations {
		fmt.Fprintf(w, "  - %s: %s\n", v.Rule, oneLine(v.Message))
	}
	if dryRun {
		fmt.Fprintln(w, "Fix the request and run it again (a dry run is not recorded).")
	} else {
		fmt.Fprintf(w, "Fix the request and run it again; `kubectl nsprov why %s` lists the denials recorded for it.\n", name)
	}
	return &exitError{code: ExitDenied}
}
