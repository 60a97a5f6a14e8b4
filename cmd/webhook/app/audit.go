package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"

	nsadmission "github.com/nsprov/nsprov/internal/admission"
	"github.com/nsprov/nsprov/internal/audit"
	"github.com/nsprov/nsprov/internal/policy"
)

// validateAudit checks the audit flags of serve.
func (o *ServeOptions) validateAudit() []error {
	var errs []error
	if o.AuditReportSize < 1 {
		errs = append(errs, fmt.Errorf("--audit-report-size %d must be at least 1", o.AuditReportSize))
	}
	if o.AuditQueueSize < 1 {
		errs = append(errs, fmt.Errorf("--audit-queue-size %d must be at least 1", o.AuditQueueSize))
	}
	if o.AuditInterval < 0 || (o.AuditInterval > 0 && o.AuditInterval < 10*time.Second) {
		errs = append(errs, fmt.Errorf("--audit-interval %s must be 0 (no periodic audit) or at least 10s", o.AuditInterval))
	}
	switch o.DecisionLog {
	case "stdout", "stderr", "off":
	case "":
		errs = append(errs, errors.New("--decision-log must not be empty; use stdout, stderr, off or a file path"))
	default:
		if info, err := os.Stat(filepath.Dir(o.DecisionLog)); err != nil || !info.IsDir() {
			errs = append(errs, fmt.Errorf("--decision-log %q: the directory %s does not exist", o.DecisionLog, filepath.Dir(o.DecisionLog)))
		}
	}
	return errs
}

// decisionLogWriter opens the decision log: nil for off; close is a no-op
// for the standard streams.
func (o *ServeOptions) decisionLogWriter(s streams) (io.Writer, func(), error) {
	switch o.DecisionLog {
	case "off":
		return nil, func() {}, nil
	case "stdout":
		return s.out, func() {}, nil
	case "stderr":
		return s.err, func() {}, nil
	}
	f, err := os.OpenFile(o.DecisionLog, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, nil, fmt.Errorf("--decision-log: %w", err)
	}
	return f, func() { _ = f.Close() }, nil
}

// setupAudit builds the audit sink that the webhooks record to, and adds its
// writer (every replica) and the background auditor (leader only) to mgr.
// The returned function closes the decision log once mgr has stopped.
func (o *ServeOptions) setupAudit(mgr ctrl.Manager, cfg *rest.Config, store *policy.Store, s streams, log logr.Logger) (nsadmission.Recorder, func(), error) {
	w, closeLog, err := o.decisionLogWriter(s)
	if err != nil {
		return nil, nil, usageError(err)
	}
	alog := log.WithName("audit")
	sink := audit.NewSink(audit.Options{
		DecisionLog: w, Logger: alog, ReportSize: o.AuditReportSize, QueueSize: o.AuditQueueSize,
	})
	audit.ObservePolicies(store)
	writer, err := audit.NewWriter(cfg, sink)
	if err != nil {
		closeLog()
		return nil, nil, err
	}
	auditor, err := audit.NewAuditor(cfg, store, audit.AuditorOptions{
		ReportSize: o.AuditReportSize, Interval: o.AuditInterval, Username: o.Identity, Logger: alog,
	})
	if err != nil {
		closeLog()
		return nil, nil, err
	}
	if err := mgr.Add(writer); err != nil {
		closeLog()
		return nil, nil, err
	}
	if err := mgr.Add(auditor); err != nil {
		closeLog()
		return nil, nil, err
	}
	return sink, closeLog, nil
}

// AuditOptions are the flags of `nsprov audit`.
type AuditOptions struct {
	// Kubeconfig is the kubeconfig file to use; empty uses $KUBECONFIG, the
	// in-cluster configuration or ~/.kube/config, in that order.
	Kubeconfig string
	// Limit is how many denied requests to print, newest first; 0 prints all.
	Limit int
	// User and Namespace keep only the denials of that user or namespace.
	User, Namespace string
	// Existing prints the existing namespaces that violate the active policy
	// (the background audit) instead of the denied requests.
	Existing bool
}

// AddFlags binds the options to a flag set.
func (o *AuditOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, the in-cluster configuration, or ~/.kube/config)")
	fs.IntVar(&o.Limit, "limit", 50, "how many denied requests to print, newest first; 0 prints all the report holds")
	fs.StringVar(&o.User, "user", "", "print only the denials of this user")
	fs.StringVar(&o.Namespace, "namespace", "", "print only the denials of this namespace name")
	fs.BoolVar(&o.Existing, "existing", false, "print the existing namespaces that break the active policy (ClusterReport "+audit.NamespaceAuditReportName+") instead")
}

// Validate checks the options.
func (o *AuditOptions) Validate() error {
	if o.Limit < 0 {
		return fmt.Errorf("--limit %d must not be negative; use 0 for all", o.Limit)
	}
	return nil
}

func newAuditCommand(s streams) *cobra.Command {
	o := &AuditOptions{}
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Print recent denied namespace requests (time, user, namespace, rules) from the ClusterReport " + audit.DenialsReportName,
		Long: "Print the namespace requests nsprov denied, newest first, from the OpenReports ClusterReport " +
			audit.DenialsReportName + ", one line per request with the rules it broke. With --existing, print the " +
			"existing namespaces that break the active policy, from " + audit.NamespaceAuditReportName + ".",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Validate(); err != nil {
				return usageError(err)
			}
			return runAudit(cmd.Context(), o, s)
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

func runAudit(ctx context.Context, o *AuditOptions, s streams) error {
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
		return usageError(fmt.Errorf("no Kubernetes API configuration: %w; pass --kubeconfig", err))
	}
	r, err := audit.NewReader(cfg)
	if err != nil {
		return err
	}
	if o.Existing {
		a, err := r.NamespaceAudit(ctx)
		if errors.Is(err, audit.ErrNoReport) {
			_, err = fmt.Fprintf(s.out, "No namespace audit yet (ClusterReport %s does not exist).\n", audit.NamespaceAuditReportName)
			return err
		}
		if err != nil {
			return err
		}
		return writeViolationTable(s.out, a)
	}
	denials, err := r.Denials(ctx)
	if errors.Is(err, audit.ErrNoReport) {
		_, err = fmt.Fprintf(s.out, "No denied requests recorded (ClusterReport %s does not exist).\n", audit.DenialsReportName)
		return err
	}
	if err != nil {
		return err
	}
	return writeDenialTable(s.out, denials, o)
}

// writeDenialTable prints denied requests as a table, newest first, as
// many as o.Limit of those of o.User and o.Namespace.
func writeDenialTable(out io.Writer, denials []audit.Denial, o *AuditOptions) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tUSER\tNAMESPACE\tRULES")
	n := 0
	for _, d := range denials {
		if (o.User != "" && d.User != o.User) || (o.Namespace != "" && d.Namespace != o.Namespace) {
			continue
		}
		if o.Limit > 0 && n == o.Limit {
			break
		}
		n++
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", d.Time.Format(time.RFC3339), d.User, d.Namespace, strings.Join(d.Rules, ","))
	}
	return tw.Flush()
}

// writeViolationTable prints the namespace audit: a row per namespace with
// the rules it breaks.
func writeViolationTable(out io.Writer, a *audit.NamespaceAudit) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tTEAM\tSINCE\tRULES")
	for _, r := range a.Namespaces {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Namespace, r.Team, r.Since.Format(time.RFC3339), strings.Join(r.Rules, ","))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(out, "\npolicy revision %s, %s requested namespaces audited at %s\n",
		a.PolicyRevision, a.AuditedNamespaces, a.LastAudit)
	return err
}
