package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	reportsv1alpha1 "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/nsprov/nsprov/internal/audit"
)

// WhyOptions are the flags of `kubectl nsprov why`.
type WhyOptions struct {
	// Name is the namespace (the argument).
	Name string
	// Limit is how many denied requests to print, newest first; 0 prints
	// all the report holds.
	Limit int
	// Output is -o: json or yaml.
	Output string
}

// AddFlags binds the options to a flag set.
func (o *WhyOptions) AddFlags(fs *pflag.FlagSet) {
	fs.IntVar(&o.Limit, "limit", 10, "how many denied requests to print, newest first; 0 prints all the report holds")
	addOutputFlag(fs, &o.Output)
}

// Validate checks the options.
func (o *WhyOptions) Validate() error {
	if o.Limit < 0 {
		return fmt.Errorf("--limit %d must not be negative; use 0 for all", o.Limit)
	}
	return validateOutput(o.Output)
}

func newWhyCommand(s streams, co *ClientOptions) *cobra.Command {
	o := &WhyOptions{}
	cmd := &cobra.Command{
		Use:   "why NAME",
		Short: "Show why a namespace was denied or breaks the policy: its recorded denials and audit findings",
		Long: "Show what nsprov recorded about the namespace NAME: the requests for it that the policy denied, newest " +
			"first, with every rule broken and how to fix it (ClusterReport " + audit.DenialsReportName + "), the " +
			"rules the existing namespace breaks according to the last background audit (ClusterReport " +
			audit.NamespaceAuditReportName + "), and its Provisioned condition when that is not True.",
		Example: "  kubectl nsprov why payments-prod\n  kubectl nsprov why payments-prod -o yaml",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Name = args[0]
			if err := o.Validate(); err != nil {
				return usageError(err)
			}
			cfg, err := co.RESTConfig()
			if err != nil {
				return err
			}
			c, err := newPluginClient(cfg)
			if err != nil {
				return err
			}
			r, err := audit.NewReader(cfg)
			if err != nil {
				return err
			}
			return runWhy(cmd.Context(), c, r, o, s)
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

// whyResult is what `why` reports of a namespace; -o json and yaml print it.
type whyResult struct {
	Name string `json:"name"`
	// Exists tells whether the namespace exists.
	Exists bool `json:"exists"`
	// Condition is its Provisioned condition, when it exists and has one.
	Condition *conditionStatus `json:"condition,omitempty"`
	// Denials are the recorded denied requests for it, newest first.
	Denials []recordedDenial `json:"denials"`
	// DenialsNote says why there are no denials to show, when the report
	// is missing.
	DenialsNote string `json:"denialsNote,omitempty"`
	// Audit is what the last background audit found.
	Audit *auditFinding `json:"audit,omitempty"`
	// AuditNote says why there is no audit to show.
	AuditNote string `json:"auditNote,omitempty"`
}

type recordedDenial struct {
	Time       time.Time       `json:"time"`
	User       string          `json:"user"`
	Operation  string          `json:"operation"`
	RequestUID string          `json:"requestUID"`
	Violations []ruleViolation `json:"violations"`
}

type auditFinding struct {
	PolicyRevision string          `json:"policyRevision,omitempty"`
	LastAudit      string          `json:"lastAudit,omitempty"`
	Since          *time.Time      `json:"since,omitempty"`
	Violations     []ruleViolation `json:"violations"`
}

func runWhy(ctx context.Context, c client.Client, r *audit.Reader, o *WhyOptions, s streams) error {
	res := &whyResult{Name: o.Name, Denials: []recordedDenial{}}
	ns := &corev1.Namespace{}
	switch err := c.Get(ctx, client.ObjectKey{Name: o.Name}, ns); {
	case err == nil:
		res.Exists = true
		res.Condition = statusOf(ns).Condition
	case apierrors.IsNotFound(err):
	default:
		return fmt.Errorf("reading namespace %s: %w", o.Name, err)
	}

	report, err := r.Report(ctx, audit.DenialsReportName)
	switch {
	case err == nil:
		res.Denials = denialsFor(report, o.Name, o.Limit)
	case errors.Is(err, audit.ErrNoReport):
		res.DenialsNote = fmt.Sprintf("no denied requests recorded (ClusterReport %s does not exist)", audit.DenialsReportName)
	case errors.Is(err, audit.ErrNotInstalled):
		res.DenialsNote = err.Error()
	default:
		return err
	}
	report, err = r.Report(ctx, audit.NamespaceAuditReportName)
	switch {
	case err == nil:
		res.Audit = auditFor(report, o.Name)
	case errors.Is(err, audit.ErrNoReport):
		res.AuditNote = fmt.Sprintf("no namespace audit yet (ClusterReport %s does not exist)", audit.NamespaceAuditReportName)
	case errors.Is(err, audit.ErrNotInstalled):
		res.AuditNote = err.Error()
	default:
		return err
	}
	if o.Output != outputText {
		return printStructured(s.out, o.Output, res)
	}
	return writeWhy(s.out, res)
}

// resultKey identifies a report result by its subject (request UID or
// namespace) and rule.
type resultKey struct{ subject, rule string }

// denialsFor returns the denied requests for namespace name from a denials
// report, newest first, at most limit (0: all), each rule with the message
// the requester was given.
func denialsFor(report *reportsv1alpha1.ClusterReport, name string, limit int) []recordedDenial {
	messages := map[resultKey]string{}
	for i := range report.Results {
		rr := &report.Results[i]
		messages[resultKey{rr.Properties[audit.PropRequestUID], rr.Rule}] = rr.Description
	}
	out := []recordedDenial{}
	for _, d := range audit.DenialsOf(report) {
		if d.Namespace != name {
			continue
		}
		if limit > 0 && len(out) == limit {
			break
		}
		rd := recordedDenial{Time: d.Time, User: d.User, Operation: d.Operation, RequestUID: d.UID}
		for _, rule := range d.Rules {
			rd.Violations = append(rd.Violations, ruleViolation{Rule: rule, Message: messages[resultKey{d.UID, rule}]})
		}
		out = append(out, rd)
	}
	return out
}

// auditFor returns what a namespace audit report found about namespace
// name; nil when it breaks no rule.
func auditFor(report *reportsv1alpha1.ClusterReport, name string) *auditFinding {
	a := audit.NamespaceAuditOf(report)
	f := &auditFinding{PolicyRevision: a.PolicyRevision, LastAudit: a.LastAudit, Violations: []ruleViolation{}}
	messages := map[resultKey]string{}
	for i := range report.Results {
		rr := &report.Results[i]
		if len(rr.Subjects) > 0 {
			messages[resultKey{rr.Subjects[0].Name, rr.Rule}] = rr.Description
		}
	}
	for _, row := range a.Namespaces {
		if row.Namespace != name {
			continue
		}
		since := row.Since
		f.Since = &since
		for _, rule := range row.Rules {
			f.Violations = append(f.Violations, ruleViolation{Rule: rule, Message: messages[resultKey{name, rule}]})
		}
	}
	return f
}

// writeWhy prints a why result for people.
func writeWhy(w io.Writer, res *whyResult) error {
	switch {
	case !res.Exists:
		fmt.Fprintf(w, "Namespace %s does not exist.\n", res.Name)
	case res.Condition != nil && res.Condition.Status != string(corev1.ConditionTrue):
		fmt.Fprintf(w, "Namespace %s exists; Provisioned: %s\n", res.Name, conditionLine(res.Condition))
	case res.Condition != nil:
		fmt.Fprintf(w, "Namespace %s exists and is provisioned.\n", res.Name)
	default:
		fmt.Fprintf(w, "Namespace %s exists.\n", res.Name)
	}

	fmt.Fprintln(w)
	switch {
	case res.DenialsNote != "":
		fmt.Fprintf(w, "Denied requests: %s.\n", res.DenialsNote)
	case len(res.Denials) == 0:
		fmt.Fprintf(w, "Denied requests: none recorded for %s.\n", res.Name)
	default:
		fmt.Fprintf(w, "Denied requests for %s (newest first, from ClusterReport %s):\n", res.Name, audit.DenialsReportName)
		for _, d := range res.Denials {
			fmt.Fprintf(w, "  %s  %s by %s\n", d.Time.Format(time.RFC3339), d.Operation, d.User)
			writeViolations(w, "    ", d.Violations)
		}
	}

	fmt.Fprintln(w)
	switch {
	case res.AuditNote != "":
		fmt.Fprintf(w, "Audit: %s.\n", res.AuditNote)
	case len(res.Audit.Violations) == 0:
		fmt.Fprintf(w, "Audit: %s breaks no rule of policy revision %s (last audit %s).\n", res.Name, orDash(res.Audit.PolicyRevision), orDash(res.Audit.LastAudit))
	default:
		fmt.Fprintf(w, "Audit: %s breaks these rules of policy revision %s (since %s, last audit %s):\n",
			res.Name, orDash(res.Audit.PolicyRevision), res.Audit.Since.Format(time.RFC3339), orDash(res.Audit.LastAudit))
		writeViolations(w, "  ", res.Audit.Violations)
	}
	return nil
}

func writeViolations(w io.Writer, indent string, vs []ruleViolation) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, v := range vs {
		fmt.Fprintf(tw, "%s- %s:\t%s\n", indent, v.Rule, oneLine(v.Message))
	}
	_ = tw.Flush()
}
