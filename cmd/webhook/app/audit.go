package app

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	reportsv1alpha1 "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/nsprov/nsprov/internal/admission/audit"
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
	c, err := client.New(cfg, client.Options{Scheme: audit.Scheme})
	if err != nil {
		return err
	}
	name := audit.DenialsReportName
	if o.Existing {
		name = audit.NamespaceAuditReportName
	}
	report := &reportsv1alpha1.ClusterReport{}
	err = c.Get(ctx, client.ObjectKey{Name: name}, report)
	switch {
	case meta.IsNoMatchError(err):
		return fmt.Errorf("OpenReports is not installed in this cluster (no ClusterReport kind), so nsprov keeps no report; "+
			"denials are in nsprov's decision log and in Events: kubectl get events -A --field-selector reason=%s", audit.EventReason)
	case apierrors.IsNotFound(err):
		if o.Existing {
			_, err = fmt.Fprintf(s.out, "No namespace audit yet (ClusterReport %s does not exist).\n", name)
		} else {
			_, err = fmt.Fprintf(s.out, "No denied requests recorded (ClusterReport %s does not exist).\n", name)
		}
		return err
	case err != nil:
		return fmt.Errorf("reading ClusterReport %s: %w", name, err)
	}
	if o.Existing {
		return writeViolationTable(s.out, report)
	}
	return writeDenialTable(s.out, report, o)
}

// deniedRequest is one row of the denial table: a request and its rules.
type deniedRequest struct {
	time                 time.Time
	uid, user, namespace string
	operation            string
	rules                []string
}

// denialRows groups a report's results by request, newest first.
func denialRows(report *reportsv1alpha1.ClusterReport) []*deniedRequest {
	byUID := map[string]*deniedRequest{}
	var rows []*deniedRequest
	for i := range report.Results {
		r := &report.Results[i]
		uid := r.Properties[audit.PropRequestUID]
		row, ok := byUID[uid]
		if !ok {
			row = &deniedRequest{
				time: time.Unix(r.Timestamp.Seconds, int64(r.Timestamp.Nanos)).UTC(), uid: uid,
				user: r.Properties[audit.PropUser], operation: r.Properties[audit.PropOperation],
			}
			if len(r.Subjects) > 0 {
				row.namespace = r.Subjects[0].Name
			}
			byUID[uid] = row
			rows = append(rows, row)
		}
		row.rules = append(row.rules, r.Rule)
	}
	sort.SliceStable(rows, func(i, j int) bool {
		if !rows[i].time.Equal(rows[j].time) {
			return rows[i].time.After(rows[j].time)
		}
		return rows[i].uid < rows[j].uid
	})
	for _, row := range rows {
		sort.Strings(row.rules)
	}
	return rows
}

// writeDenialTable prints the denied requests of a report as a table.
func writeDenialTable(out io.Writer, report *reportsv1alpha1.ClusterReport, o *AuditOptions) error {
	rows := denialRows(report)
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tUSER\tNAMESPACE\tRULES")
	n := 0
	for _, r := range rows {
		if (o.User != "" && r.user != o.User) || (o.Namespace != "" && r.namespace != o.Namespace) {
			continue
		}
		if o.Limit > 0 && n == o.Limit {
			break
		}
		n++
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.time.Format(time.RFC3339), r.user, r.namespace, strings.Join(r.rules, ","))
	}
	return tw.Flush()
}

// writeViolationTable prints the namespace audit: a row per namespace with
// the rules it breaks.
func writeViolationTable(out io.Writer, report *reportsv1alpha1.ClusterReport) error {
	type row struct {
		namespace, team string
		since           time.Time
		rules           []string
	}
	byNS := map[string]*row{}
	var rows []*row
	for i := range report.Results {
		r := &report.Results[i]
		name := ""
		if len(r.Subjects) > 0 {
			name = r.Subjects[0].Name
		}
		x, ok := byNS[name]
		t := time.Unix(r.Timestamp.Seconds, int64(r.Timestamp.Nanos)).UTC()
		if !ok {
			x = &row{namespace: name, team: r.Properties[audit.PropTeam], since: t}
			byNS[name] = x
			rows = append(rows, x)
		}
		if t.Before(x.since) {
			x.since = t
		}
		x.rules = append(x.rules, r.Rule)
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].namespace < rows[j].namespace })
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAMESPACE\tTEAM\tSINCE\tRULES")
	for _, r := range rows {
		sort.Strings(r.rules)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.namespace, r.team, r.since.Format(time.RFC3339), strings.Join(r.rules, ","))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(out, "\npolicy revision %s, %s requested namespaces audited at %s\n",
		report.Annotations[audit.AnnotationPolicyRevision], report.Annotations[audit.AnnotationAuditedNamespaces], report.Annotations[audit.AnnotationLastAudit])
	return err
}
