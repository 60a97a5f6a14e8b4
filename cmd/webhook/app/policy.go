package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/yaml"
	sigsyaml "sigs.k8s.io/yaml"

	nsadmission "github.com/nsprov/nsprov/internal/admission"
	"github.com/nsprov/nsprov/internal/policy"
	"github.com/nsprov/nsprov/policies"
)

func newPolicyCommand(s streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Evaluate and test the Rego policy bundle offline",
	}
	cmd.AddCommand(newEvalCommand(s), newTestCommand(s), newExportCommand(s))
	return cmd
}

// maxManifestBytes bounds what policy eval reads from a file or stdin.
const maxManifestBytes = 1 << 20

// EvalOptions are the flags of `nsprov policy eval`.
type EvalOptions struct {
	// File is the Namespace manifest (YAML or JSON) to evaluate; "-" reads stdin.
	File string
	// OldFile is the stored Namespace for an UPDATE.
	OldFile string
	// User is the requesting username; empty means an unprivileged user.
	User string
	// Groups are the requester's groups.
	Groups []string
	// Operation is CREATE or UPDATE.
	Operation string
	// PolicyDir replaces the embedded bundle with the one in this directory.
	PolicyDir string
	// Output is json or text.
	Output string
	// Evaluator is compiled or topdown, as serve's --policy-evaluator.
	Evaluator string
}

// AddFlags binds the options to a flag set.
func (o *EvalOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVarP(&o.File, "filename", "f", "", "Namespace manifest to evaluate (YAML or JSON; - reads standard input)")
	fs.StringVar(&o.OldFile, "old", "", "the stored Namespace, for --operation UPDATE")
	fs.StringVar(&o.User, "user", "", "username of the requester (default: an unprivileged user named \"anonymous-user\" with no groups)")
	fs.StringArrayVar(&o.Groups, "group", nil, "a group of the requester; repeat for several")
	fs.StringVar(&o.Operation, "operation", "", "CREATE or UPDATE (default CREATE, or UPDATE when --old is set)")
	fs.StringVar(&o.PolicyDir, "policy-dir", "", "directory with a policy bundle laid out like policies/, used instead of the embedded one")
	fs.StringVarP(&o.Output, "output", "o", "text", "output format: text or json")
	fs.StringVar(&o.Evaluator, "policy-evaluator", policy.EvaluatorCompiled, "compiled or topdown, as serve's --policy-evaluator; both must decide the same")
}

// Validate checks the options and fills in defaults.
func (o *EvalOptions) Validate() error {
	var errs []error
	if o.File == "" {
		errs = append(errs, errors.New("-f is required: the Namespace manifest to evaluate (or - for standard input)"))
	}
	if o.Evaluator != policy.EvaluatorCompiled && o.Evaluator != policy.EvaluatorTopdown {
		errs = append(errs, fmt.Errorf("--policy-evaluator %q is not known; use %s or %s", o.Evaluator, policy.EvaluatorCompiled, policy.EvaluatorTopdown))
	}
	o.Operation = strings.ToUpper(o.Operation)
	switch o.Operation {
	case "":
		o.Operation = "CREATE"
		if o.OldFile != "" {
			o.Operation = "UPDATE"
		}
	case "CREATE":
		if o.OldFile != "" {
			errs = append(errs, errors.New("--old is only used with --operation UPDATE"))
		}
	case "UPDATE":
		if o.OldFile == "" {
			errs = append(errs, errors.New("--operation UPDATE needs --old, the stored Namespace"))
		}
	default:
		errs = append(errs, fmt.Errorf("--operation %q is not supported; use CREATE or UPDATE", o.Operation))
	}
	if o.File == "-" && o.OldFile == "-" {
		errs = append(errs, errors.New("-f and --old cannot both read standard input"))
	}
	if o.Output != "text" && o.Output != "json" {
		errs = append(errs, fmt.Errorf("-o %q is not supported; use text or json", o.Output))
	}
	if o.User == "" {
		o.User = "anonymous-user"
	}
	return errors.Join(errs...)
}

func newEvalCommand(s streams) *cobra.Command {
	o := &EvalOptions{}
	cmd := &cobra.Command{
		Use:   "eval -f NAMESPACE.yaml",
		Short: "Evaluate a Namespace exactly as the webhooks would: mutation, then validation of the mutated object",
		Long: `Evaluate a Namespace exactly as the webhooks would: the mutation first, then
the validation of the mutated object, then the provisioning plan.

Exit code 0 when the request is allowed, 1 when it is denied, 2 on bad input
or a policy that does not load.`,
		Example: `  nsprov policy eval -f examples/payments-dev.yaml --user alice --group team-payments
  kubectl create ns web-prod --dry-run=client -o yaml | nsprov policy eval -f - -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Validate(); err != nil {
				return usageError(err)
			}
			return runEval(cmd.Context(), o, s)
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

func runEval(ctx context.Context, o *EvalOptions, s streams) error {
	obj, err := readNamespace(o.File, s.in)
	if err != nil {
		return usageError(err)
	}
	req := &policy.Request{UID: "policy-eval", Operation: o.Operation, Username: o.User, Groups: o.Groups, Object: obj}
	if req.Groups == nil {
		req.Groups = []string{}
	}
	if o.OldFile != "" {
		if req.OldObject, err = readNamespace(o.OldFile, s.in); err != nil {
			return usageError(err)
		}
	}
	b, err := loadBundle(ctx, o.PolicyDir)
	if err != nil {
		return usageError(err)
	}
	if err := b.UseEvaluator(o.Evaluator); err != nil {
		return usageError(err)
	}
	d, err := nsadmission.Decide(ctx, b, req)
	if err != nil {
		return usageError(fmt.Errorf("policy bundle %s (revision %s): %w", b.Source, b.Revision, err))
	}
	d.Object.APIVersion, d.Object.Kind = "v1", "Namespace"
	if o.Output == "json" {
		enc := json.NewEncoder(s.out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(d); err != nil {
			return err
		}
	} else if err := printDecision(s.out, d, b); err != nil {
		return err
	}
	if !d.Allowed {
		return &exitError{code: ExitDenied}
	}
	return nil
}

func loadBundle(ctx context.Context, dir string) (*policy.Bundle, error) {
	if dir == "" {
		return policy.LoadEmbedded(ctx)
	}
	return policy.LoadDir(ctx, dir)
}

// readNamespace reads one Namespace from a YAML or JSON file, or stdin for "-".
func readNamespace(path string, stdin io.Reader) (*corev1.Namespace, error) {
	var r io.Reader
	name := path
	if path == "-" {
		r, name = stdin, "standard input"
	} else {
		f, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		r = f
	}
	data, err := io.ReadAll(io.LimitReader(r, maxManifestBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if len(data) > maxManifestBytes {
		return nil, fmt.Errorf("%s is larger than %d bytes; a Namespace manifest is much smaller", name, maxManifestBytes)
	}
	dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s is empty; it must hold one Namespace manifest", name)
		}
		return nil, fmt.Errorf("%s is not valid YAML or JSON: %w", name, err)
	}
	var extra json.RawMessage
	if err := dec.Decode(&extra); err == nil && len(bytes.TrimSpace(extra)) > 0 && string(extra) != "null" {
		return nil, fmt.Errorf("%s holds more than one document; evaluate one Namespace at a time", name)
	}
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return nil, fmt.Errorf("%s is not a Kubernetes object: %w", name, err)
	}
	if head.Kind != "Namespace" || (head.APIVersion != "v1" && head.APIVersion != "") {
		return nil, fmt.Errorf("%s holds apiVersion %q kind %q; nsprov evaluates v1 Namespaces", name, head.APIVersion, head.Kind)
	}
	ns := &corev1.Namespace{}
	if err := json.Unmarshal(raw, ns); err != nil {
		return nil, fmt.Errorf("%s is not a valid Namespace: %w", name, err)
	}
	if ns.Name == "" {
		return nil, fmt.Errorf("%s has no metadata.name", name)
	}
	return ns, nil
}

func printDecision(w io.Writer, d *nsadmission.Decision, b *policy.Bundle) error {
	var buf bytes.Buffer
	verdict := "ALLOWED"
	if !d.Allowed {
		verdict = "DENIED"
	}
	fmt.Fprintf(&buf, "%s namespace %s (policy %s, revision %s)\n", verdict, d.Object.Name, b.Source, b.Revision)
	if len(d.Violations) > 0 {
		fmt.Fprintln(&buf, "\nViolations:")
		for _, v := range d.Violations {
			fmt.Fprintf(&buf, "  %s\n", v)
		}
	}
	if len(d.Warnings) > 0 {
		fmt.Fprintln(&buf, "\nWarnings:")
		for _, warning := range d.Warnings {
			fmt.Fprintf(&buf, "  %s\n", warning)
		}
	}
	if len(d.Patch) > 0 {
		fmt.Fprintln(&buf, "\nMutation:")
		for _, op := range d.Patch {
			v, _ := json.Marshal(op.Value)
			if op.Operation == "remove" {
				fmt.Fprintf(&buf, "  %s %s\n", op.Operation, op.Path)
			} else {
				fmt.Fprintf(&buf, "  %s %s %s\n", op.Operation, op.Path, v)
			}
		}
	}
	if d.Plan != nil {
		plan, err := sigsyaml.Marshal(d.Plan)
		if err != nil {
			return err
		}
		fmt.Fprintln(&buf, "\nPlan:")
		for _, line := range strings.Split(strings.TrimRight(string(plan), "\n"), "\n") {
			fmt.Fprintf(&buf, "  %s\n", line)
		}
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// TestOptions are the flags of `nsprov policy test`.
type TestOptions struct {
	// PolicyDir replaces the embedded bundle with the one in this directory.
	PolicyDir string
	// Verbose lists every test, not only the failing ones.
	Verbose bool
}

// AddFlags binds the options to a flag set.
func (o *TestOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.PolicyDir, "policy-dir", "", "directory with a policy bundle laid out like policies/, tested instead of the embedded one")
	fs.BoolVarP(&o.Verbose, "verbose", "v", false, "list every test")
}

func newTestCommand(s streams) *cobra.Command {
	o := &TestOptions{}
	cmd := &cobra.Command{
		Use:   "test",
		Short: "Run the bundle's _test.rego tests, reported like opa test",
		Long: `Run the bundle's _test.rego tests with OPA's tester, reported like opa test.

Exit code 0 when every test passes, 1 when a test fails, 2 when the bundle
does not load.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := loadBundle(cmd.Context(), o.PolicyDir)
			if err != nil {
				return usageError(err)
			}
			sum, err := b.Test(cmd.Context(), s.out, o.Verbose)
			if err != nil {
				return usageError(err)
			}
			if !sum.OK() {
				return &exitError{code: ExitDenied, err: fmt.Errorf("%d of %d tests failed", sum.Failed+sum.Errored, sum.Passed+sum.Failed+sum.Errored)}
			}
			return nil
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

func newExportCommand(s streams) *cobra.Command {
	return &cobra.Command{
		Use:   "export DIR",
		Short: "Write the embedded policy bundle into DIR, to start a bundle of your own",
		Long: `Write the embedded policy bundle (Rego modules, their tests and the data under
config/) into DIR, which must not hold any of its files yet. Edit the copy,
check it with "nsprov policy test --policy-dir DIR" and serve it with
"nsprov serve --policy-dir DIR".`,
		Args: cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			if err := policies.Export(args[0]); err != nil {
				return usageError(err)
			}
			_, err := fmt.Fprintf(s.out, "wrote the embedded policy bundle to %s\n", args[0])
			return err
		},
	}
}
