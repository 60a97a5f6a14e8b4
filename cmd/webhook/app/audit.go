package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/nsprov/nsprov/internal/audit"
)

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
