package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/nsprov/nsprov/internal/contract"
)

// StatusOptions are the flags of `kubectl nsprov status`.
type StatusOptions struct {
	// Name is the namespace to show (the optional argument); empty lists
	// the requested namespaces.
	Name string
	// All lists every requested namespace the caller can read, not only
	// those she requested.
	All bool
	// Team keeps only the namespaces of this team.
	Team string
	// Watch follows Name's provisioning until its condition is True or
	// False.
	Watch bool
	// Progress prints a line per change while watching; without it, --watch
	// prints only the final status.
	Progress bool
	// Timeout bounds --watch; 0 waits until the end.
	Timeout time.Duration
	// Interval is how often --watch reads the namespace and its Workflow.
	Interval time.Duration
	// Output is -o: json or yaml.
	Output string
}

// AddFlags binds the options to a flag set.
func (o *StatusOptions) AddFlags(fs *pflag.FlagSet) {
	fs.BoolVarP(&o.All, "all", "A", false, "list every requested namespace you can read, not only those you requested")
	fs.StringVar(&o.Team, "team", "", "list only the namespaces of this team (nsprov.io/team)")
	fs.BoolVarP(&o.Watch, "watch", "w", false, "follow NAME's provisioning, a line per change, until its Provisioned condition is True (exit 0) or False (exit 1)")
	fs.BoolVar(&o.Progress, "progress", true, "with --watch, print a line per change, after the time since the watch began; --progress=false prints only the final status")
	fs.DurationVar(&o.Timeout, "timeout", 0, "with --watch, give up after this long (exit 1); 0 waits until the end")
	fs.DurationVar(&o.Interval, "interval", time.Second, "with --watch, how often to read the namespace and its Workflow")
	addOutputFlag(fs, &o.Output)
}

// Validate checks the options.
func (o *StatusOptions) Validate() error {
	if o.Watch && o.Name == "" {
		return errors.New("--watch follows one namespace: give its NAME, for example `status payments-dev --watch`")
	}
	if o.Name != "" && (o.All || o.Team != "") {
		return errors.New("--all and --team select namespaces to list; leave them out with a NAME")
	}
	if o.Timeout < 0 {
		return fmt.Errorf("--timeout %s must not be negative; use 0 for no limit", o.Timeout)
	}
	if o.Interval <= 0 {
		return fmt.Errorf("--interval %s must be positive, for example 1s", o.Interval)
	}
	return validateOutput(o.Output)
}

func newStatusCommand(s streams, co *ClientOptions) *cobra.Command {
	o := &StatusOptions{}
	cmd := &cobra.Command{
		Use:   "status [NAME]",
		Short: "Show how requested namespaces are doing: the Provisioned condition, the Workflow and its steps",
		Long: "With NAME, show the namespace's request, its Provisioned condition (status, reason and message), the " +
			"Workflow that provisions it (annotation " + contract.WorkflowAnnotation + ") and each of the Workflow's steps: " +
			"done, running, or failed with the step's message. --watch prints a line per change until the condition is " +
			"True (exit 0) or False (exit 1) for the request as it now is (while " + contract.ProvisioningAnnotation + " says " +
			contract.ProvisioningPending + ", the condition may still report the previous run). Without NAME, list the namespaces you requested (-A: every requested " +
			"namespace you can read), a line each.",
		Example: "  kubectl nsprov status\n" +
			"  kubectl nsprov status payments-dev --watch\n" +
			"  kubectl nsprov status payments-dev -o json",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				o.Name = args[0]
			}
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
			return runStatus(cmd.Context(), c, o, s)
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

// namespaceStatus is what `status` reports of a requested namespace; -o
// json and yaml print it.
type namespaceStatus struct {
	Name          string `json:"name"`
	Phase         string `json:"phase,omitempty"`
	Team          string `json:"team,omitempty"`
	Environment   string `json:"environment,omitempty"`
	Tier          string `json:"tier,omitempty"`
	NetworkPolicy string `json:"networkPolicy,omitempty"`
	Features      string `json:"features,omitempty"`
	RequestedBy   string `json:"requestedBy,omitempty"`
	// Annotations are nsprov's other annotations on the namespace (those
	// the controller or the requester add beyond the request).
	Annotations map[string]string `json:"annotations,omitempty"`
	// Condition is the Provisioned condition; nil until nsprov reports one.
	Condition *conditionStatus `json:"condition,omitempty"`
	// Workflow is the Workflow of nsprov.io/workflow; nil when there is none.
	Workflow *workflowStatus `json:"workflow,omitempty"`
}

type conditionStatus struct {
	Status             string       `json:"status"`
	Reason             string       `json:"reason,omitempty"`
	Message            string       `json:"message,omitempty"`
	LastTransitionTime *metav1.Time `json:"lastTransitionTime,omitempty"`
}

type workflowStatus struct {
	Namespace  string       `json:"namespace"`
	Name       string       `json:"name"`
	Phase      string       `json:"phase,omitempty"`
	Progress   string       `json:"progress,omitempty"`
	Message    string       `json:"message,omitempty"`
	StartedAt  *metav1.Time `json:"startedAt,omitempty"`
	FinishedAt *metav1.Time `json:"finishedAt,omitempty"`
	// Error says why the Workflow could not be read (gone, or not
	// readable with the caller's rights).
	Error string       `json:"error,omitempty"`
	Steps []stepStatus `json:"steps,omitempty"`
}

// stepStatus is one step of a Workflow: State is done, running, pending,
// failed, skipped or omitted.
type stepStatus struct {
	Name     string `json:"name"`
	Template string `json:"template,omitempty"`
	State    string `json:"state"`
	Message  string `json:"message,omitempty"`
	// Attempts is how many times a step with a retry strategy ran.
	Attempts   int          `json:"attempts,omitempty"`
	StartedAt  *metav1.Time `json:"startedAt,omitempty"`
	FinishedAt *metav1.Time `json:"finishedAt,omitempty"`
}

// statusList is the -o json/yaml output of `status` without NAME.
type statusList struct {
	Items []namespaceStatus `json:"items"`
}

// ignoredAnnotations are the nsprov annotations status shows in fields of
// their own (or never).
var ignoredAnnotations = map[string]bool{
	contract.TeamAnnotation: true, contract.EnvironmentAnnotation: true, contract.TierAnnotation: true,
	contract.NetworkPolicyAnnotation: true, contract.FeaturesAnnotation: true,
	contract.RequestedByAnnotation: true, contract.WorkflowAnnotation: true,
}

func runStatus(ctx context.Context, c client.Client, o *StatusOptions, s streams) error {
	if o.Name == "" {
		return listStatus(ctx, c, o, s)
	}
	if o.Watch {
		return watchStatus(ctx, c, o, s)
	}
	st, err := readStatus(ctx, c, o.Name)
	if err != nil {
		return err
	}
	if o.Output != outputText {
		return printStructured(s.out, o.Output, st)
	}
	return writeStatus(s.out, st, time.Now())
}

// readStatus reads the namespace name and its Workflow.
func readStatus(ctx context.Context, c client.Client, name string) (*namespaceStatus, error) {
	ns := &corev1.Namespace{}
	if err := c.Get(ctx, client.ObjectKey{Name: name}, ns); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("namespace %s does not exist; request it with `kubectl nsprov request %s --team TEAM --environment ENV`, "+
				"or see why a request was denied with `kubectl nsprov why %s`", name, name, name)
		}
		return nil, fmt.Errorf("reading namespace %s: %w", name, err)
	}
	if !contract.IsRequested(ns) {
		return nil, fmt.Errorf("namespace %s is not an nsprov request (it has no %s annotations)", name, contract.Prefix)
	}
	st := statusOf(ns)
	st.Workflow = readWorkflow(ctx, c, ns)
	return st, nil
}

// statusOf reads the request and the condition of a namespace.
func statusOf(ns *corev1.Namespace) *namespaceStatus {
	a := ns.Annotations
	st := &namespaceStatus{
		Name: ns.Name, Phase: string(ns.Status.Phase),
		Team: a[contract.TeamAnnotation], Environment: a[contract.EnvironmentAnnotation],
		Tier: a[contract.TierAnnotation], NetworkPolicy: a[contract.NetworkPolicyAnnotation],
		Features: a[contract.FeaturesAnnotation], RequestedBy: a[contract.RequestedByAnnotation],
	}
	if st.Tier == "" {
		st.Tier = ns.Labels[contract.TierLabel]
	}
	for k, v := range a {
		if strings.HasPrefix(k, contract.Prefix) && !ignoredAnnotations[k] {
			if st.Annotations == nil {
				st.Annotations = map[string]string{}
			}
			st.Annotations[k] = v
		}
	}
	for _, c := range ns.Status.Conditions {
		if c.Type == contract.ConditionProvisioned {
			st.Condition = &conditionStatus{Status: string(c.Status), Reason: c.Reason, Message: c.Message}
			if !c.LastTransitionTime.IsZero() {
				t := c.LastTransitionTime
				st.Condition.LastTransitionTime = &t
			}
		}
	}
	return st
}

// readWorkflow reads the Workflow of the namespace's nsprov.io/workflow
// annotation; nil when it has none. A Workflow that cannot be read is
// reported in its Error.
func readWorkflow(ctx context.Context, c client.Client, ns *corev1.Namespace) *workflowStatus {
	ref := ns.Annotations[contract.WorkflowAnnotation]
	if ref == "" {
		return nil
	}
	wfNamespace, wfName, ok := strings.Cut(ref, "/")
	if !ok || wfNamespace == "" || wfName == "" {
		return &workflowStatus{Name: ref, Error: fmt.Sprintf("annotation %s=%q is not NAMESPACE/NAME", contract.WorkflowAnnotation, ref)}
	}
	ws := &workflowStatus{Namespace: wfNamespace, Name: wfName}
	wf := &wfv1.Workflow{}
	switch err := c.Get(ctx, client.ObjectKey{Namespace: wfNamespace, Name: wfName}, wf); {
	case apierrors.IsNotFound(err):
		ws.Error = "the Workflow no longer exists (Argo deletes finished Workflows after their TTL)"
		return ws
	case apierrors.IsForbidden(err):
		ws.Error = fmt.Sprintf("you may not read Workflows in namespace %s (ask your cluster admin for nsprov's requester role): %v", wfNamespace, err)
		return ws
	case err != nil:
		ws.Error = fmt.Sprintf("reading the Workflow: %v", err)
		return ws
	}
	ws.Phase, ws.Progress, ws.Message = string(wf.Status.Phase), string(wf.Status.Progress), wf.Status.Message
	if !wf.Status.StartedAt.IsZero() {
		t := wf.Status.StartedAt
		ws.StartedAt = &t
	}
	if !wf.Status.FinishedAt.IsZero() {
		t := wf.Status.FinishedAt
		ws.FinishedAt = &t
	}
	ws.Steps = stepsOf(wf)
	return ws
}

// stepsOf returns the steps of a Workflow: its nodes that do work (pods,
// skipped or suspended steps), not the groups that hold them, in the order
// they started. A step with a retry strategy is its Retry node, named as
// the Workflow names the step, with the message of its latest attempt and
// the number of attempts; the attempts are not steps of their own.
func stepsOf(wf *wfv1.Workflow) []stepStatus {
	attempts := map[string]bool{}
	for _, n := range wf.Status.Nodes {
		if n.Type == wfv1.NodeTypeRetry {
			for _, child := range n.Children {
				attempts[child] = true
			}
		}
	}
	var steps []stepStatus
	for id, n := range wf.Status.Nodes {
		switch n.Type {
		case wfv1.NodeTypeDAG, wfv1.NodeTypeSteps, wfv1.NodeTypeStepGroup, wfv1.NodeTypeTaskGroup:
			continue
		}
		if id == wf.Name || attempts[id] {
			continue
		}
		name := n.DisplayName
		if name == "" {
			name = n.Name
		}
		st := stepStatus{Name: name, Template: n.TemplateName, State: stepState(n.Phase), Message: n.Message}
		if n.Type == wfv1.NodeTypeRetry {
			st.Attempts = len(n.Children)
			if len(n.Children) > 0 {
				if last, ok := wf.Status.Nodes[n.Children[len(n.Children)-1]]; ok {
					if st.Template == "" {
						st.Template = last.TemplateName
					}
					if last.Message != "" {
						st.Message = last.Message
					}
				}
			}
		}
		if !n.StartedAt.IsZero() {
			t := n.StartedAt
			st.StartedAt = &t
		}
		if !n.FinishedAt.IsZero() {
			t := n.FinishedAt
			st.FinishedAt = &t
		}
		steps = append(steps, st)
	}
	sort.Slice(steps, func(i, j int) bool {
		a, b := steps[i].StartedAt, steps[j].StartedAt
		switch {
		case a == nil && b != nil:
			return false
		case a != nil && b == nil:
			return true
		case a != nil && b != nil && !a.Equal(b):
			return a.Before(b)
		}
		return steps[i].Name < steps[j].Name
	})
	return steps
}

// stepState names a node phase as status prints it.
func stepState(p wfv1.NodePhase) string {
	switch p {
	case wfv1.NodeSucceeded:
		return "done"
	case wfv1.NodeRunning:
		return "running"
	case wfv1.NodePending, "":
		return "pending"
	case wfv1.NodeFailed, wfv1.NodeError:
		return "failed"
	case wfv1.NodeSkipped:
		return "skipped"
	case wfv1.NodeOmitted:
		return "omitted"
	}
	return strings.ToLower(string(p))
}

// conditionLine formats a condition: "True (Succeeded): message".
func conditionLine(c *conditionStatus) string {
	if c == nil {
		return "not reported yet (nsprov's controller has not reported on the namespace)"
	}
	line := c.Status
	if c.Reason != "" {
		line += " (" + c.Reason + ")"
	}
	if c.Message != "" {
		line += ": " + oneLine(c.Message)
	}
	return line
}

// oneLine joins a message's lines and collapses its runs of spaces, for a
// line of text or a table cell.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// stepCounts summarises steps: "5/7 done, 1 failed".
func stepCounts(steps []stepStatus) string {
	if len(steps) == 0 {
		return "-"
	}
	counts := map[string]int{}
	for _, s := range steps {
		counts[s.State]++
	}
	out := fmt.Sprintf("%d/%d done", counts["done"]+counts["skipped"]+counts["omitted"], len(steps))
	for _, state := range []string{"running", "pending", "failed"} {
		if counts[state] > 0 {
			out += fmt.Sprintf(", %d %s", counts[state], state)
		}
	}
	return out
}

// stepDuration is how long a step ran, or has been running at now, as
// kubectl prints ages ("5s", "2m3s"); "-" before it starts.
func stepDuration(s stepStatus, now time.Time) string {
	if s.StartedAt == nil {
		return "-"
	}
	end := now
	if s.FinishedAt != nil {
		end = s.FinishedAt.Time
	}
	d := end.Sub(s.StartedAt.Time)
	if d < 0 {
		d = 0
	}
	return duration.HumanDuration(d)
}

// writeStatus prints one namespace's status for people; now is the time
// the durations of running steps are measured to.
func writeStatus(w io.Writer, st *namespaceStatus, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "Namespace:\t%s (%s)\n", st.Name, orDash(st.Phase))
	fmt.Fprintf(tw, "Request:\tteam %s, environment %s, tier %s, network policy %s, features %s\n",
		orDash(st.Team), orDash(st.Environment), orDash(st.Tier), orDash(st.NetworkPolicy), orDash(st.Features))
	fmt.Fprintf(tw, "Requested by:\t%s\n", orDash(st.RequestedBy))
	keys := make([]string, 0, len(st.Annotations))
	for k := range st.Annotations {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(tw, "%s:\t%s\n", k, oneLine(st.Annotations[k]))
	}
	since := ""
	if c := st.Condition; c != nil && c.LastTransitionTime != nil {
		since = " (since " + c.LastTransitionTime.UTC().Format(time.RFC3339) + ")"
	}
	fmt.Fprintf(tw, "Provisioned:\t%s%s\n", conditionLine(st.Condition), since)
	fmt.Fprintf(tw, "Workflow:\t%s\n", workflowLine(st.Workflow))
	var steps []stepStatus
	if ws := st.Workflow; ws != nil && ws.Error == "" {
		if steps = ws.Steps; len(steps) == 0 {
			fmt.Fprintln(tw, "Steps:\tnone started yet")
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(steps) == 0 {
		return nil
	}
	fmt.Fprintln(w, "Steps:")
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  STEP\tSTATE\tDURATION\tATTEMPTS\tMESSAGE")
	for _, s := range steps {
		attempts := "-"
		if s.Attempts > 0 {
			attempts = strconv.Itoa(s.Attempts)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", s.Name, s.State, stepDuration(s, now), attempts, oneLine(s.Message))
	}
	return tw.Flush()
}

// workflowLine formats a Workflow: "argo/name Running (2/7): message".
func workflowLine(ws *workflowStatus) string {
	if ws == nil {
		return "none yet"
	}
	if ws.Error != "" {
		return ws.Namespace + "/" + ws.Name + ": " + ws.Error
	}
	line := ws.Namespace + "/" + ws.Name + " " + orDash(ws.Phase)
	if ws.Progress != "" {
		line += " (" + ws.Progress + ")"
	}
	if ws.Message != "" {
		line += ": " + oneLine(ws.Message)
	}
	return line
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// whoAmI is the caller's username, as the API server authenticates her.
func whoAmI(ctx context.Context, c client.Client) (string, error) {
	r := &authenticationv1.SelfSubjectReview{}
	if err := c.Create(ctx, r); err != nil {
		return "", fmt.Errorf("asking the API server who you are (SelfSubjectReview): %w; use --all to list every requested namespace", err)
	}
	return r.Status.UserInfo.Username, nil
}

// listStatus prints the requested namespaces, a line each.
func listStatus(ctx context.Context, c client.Client, o *StatusOptions, s streams) error {
	me := ""
	if !o.All {
		var err error
		if me, err = whoAmI(ctx, c); err != nil {
			return err
		}
	}
	list := &corev1.NamespaceList{}
	if err := c.List(ctx, list); err != nil {
		return fmt.Errorf("listing namespaces: %w", err)
	}
	out := statusList{Items: []namespaceStatus{}}
	for i := range list.Items {
		ns := &list.Items[i]
		if !contract.IsRequested(ns) ||
			(me != "" && ns.Annotations[contract.RequestedByAnnotation] != me) ||
			(o.Team != "" && ns.Annotations[contract.TeamAnnotation] != o.Team) {
			continue
		}
		st := statusOf(ns)
		st.Workflow = readWorkflow(ctx, c, ns)
		out.Items = append(out.Items, *st)
	}
	sort.Slice(out.Items, func(i, j int) bool { return out.Items[i].Name < out.Items[j].Name })
	if o.Output != outputText {
		return printStructured(s.out, o.Output, out)
	}
	if len(out.Items) == 0 {
		who := "you (" + me + ") requested"
		if o.All {
			who = "you can read"
		}
		_, err := fmt.Fprintf(s.out, "No requested namespaces that %s.\n", who)
		return err
	}
	tw := tabwriter.NewWriter(s.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tTEAM\tENVIRONMENT\tTIER\tPROVISIONED\tREASON\tSTEPS\tMESSAGE")
	for _, st := range out.Items {
		status, reason, message := "-", "-", ""
		if c := st.Condition; c != nil {
			status, reason, message = c.Status, orDash(c.Reason), c.Message
		}
		steps := "-"
		if st.Workflow != nil {
			steps = stepCounts(st.Workflow.Steps)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", st.Name, orDash(st.Team), orDash(st.Environment), orDash(st.Tier),
			status, reason, steps, oneLine(message))
	}
	return tw.Flush()
}

// watchStatus prints a line per change of the namespace's condition, its
// Workflow and their steps until the condition is True or False for the
// request as it now is (see finished).
func watchStatus(ctx context.Context, c client.Client, o *StatusOptions, s streams) error {
	if o.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Timeout)
		defer cancel()
	}
	var prev *namespaceStatus
	start := time.Now()
	tick := time.NewTicker(o.Interval)
	defer tick.Stop()
	for {
		st, err := readStatus(ctx, c, o.Name)
		if err != nil && ctx.Err() == nil && !transient(err) {
			return err
		}
		if err == nil {
			if o.Output == outputText && o.Progress {
				writeChanges(s.out, prev, st, time.Since(start))
			}
			prev = st
			if done, err := finished(st); done {
				if o.Output != outputText {
					if perr := printStructured(s.out, o.Output, st); perr != nil {
						return perr
					}
				} else {
					if o.Progress {
						fmt.Fprintln(s.out)
					}
					if werr := writeStatus(s.out, st, time.Now()); werr != nil {
						return werr
					}
				}
				return err
			}
		}
		select {
		case <-ctx.Done():
			last := "no status read"
			if prev != nil {
				last = conditionLine(prev.Condition)
			}
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return &exitError{code: ExitDenied, err: fmt.Errorf("namespace %s is not provisioned after %s; last: %s", o.Name, o.Timeout, last)}
			}
			return &exitError{code: ExitDenied, err: fmt.Errorf("stopped watching namespace %s; last: %s", o.Name, last)}
		case <-tick.C:
		}
	}
}

// transient tells whether a failed read is worth trying again while
// watching: the API server is busy, unreachable for a moment, or slow.
func transient(err error) bool {
	return apierrors.IsTimeout(err) || apierrors.IsServerTimeout(err) || apierrors.IsTooManyRequests(err) ||
		apierrors.IsServiceUnavailable(err) || apierrors.IsInternalError(err) ||
		utilnet.IsConnectionRefused(err) || utilnet.IsConnectionReset(err) || errors.Is(err, context.DeadlineExceeded)
}

// finished tells whether a watch ends at st: the condition is True (nil
// error) or False (an error that exits 1) and nsprov.io/provisioning no
// longer says Pending, or the namespace is going away.
func finished(st *namespaceStatus) (bool, error) {
	if st.Phase == string(corev1.NamespaceTerminating) {
		return true, &exitError{code: ExitDenied, err: fmt.Errorf("namespace %s is being deleted", st.Name)}
	}
	if st.Condition == nil {
		return false, nil
	}
	// The request as it now is is still being provisioned: the condition may
	// report the previous run, or nsprov has not yet recorded this run's end
	// (the condition and the annotation are two writes).
	if st.Annotations[contract.ProvisioningAnnotation] == contract.ProvisioningPending {
		return false, nil
	}
	switch corev1.ConditionStatus(st.Condition.Status) {
	case corev1.ConditionTrue:
		return true, nil
	case corev1.ConditionFalse:
		return true, &exitError{code: ExitDenied, err: fmt.Errorf("namespace %s is not provisioned: %s", st.Name, conditionLine(st.Condition))}
	}
	return false, nil
}

// writeChanges prints what changed from prev to cur, a line each, after
// the time since the watch began.
func writeChanges(w io.Writer, prev, cur *namespaceStatus, elapsed time.Duration) {
	at := fmt.Sprintf("%5s", duration.HumanDuration(elapsed.Truncate(time.Second)))
	if prev == nil || !sameCondition(prev.Condition, cur.Condition) {
		fmt.Fprintf(w, "%s  Provisioned: %s\n", at, conditionLine(cur.Condition))
	}
	var was *workflowStatus
	if prev != nil {
		was = prev.Workflow
	}
	ws := cur.Workflow
	if ws == nil {
		return
	}
	if was == nil || was.Namespace != ws.Namespace || was.Name != ws.Name {
		was = nil
		fmt.Fprintf(w, "%s  Workflow %s/%s\n", at, ws.Namespace, ws.Name)
	}
	if ws.Error != "" && (was == nil || was.Error != ws.Error) {
		fmt.Fprintf(w, "%s  Workflow: %s\n", at, ws.Error)
	}
	before := map[string]stepStatus{}
	if was != nil {
		for _, s := range was.Steps {
			before[s.Name] = s
		}
	}
	for _, s := range ws.Steps {
		if b, ok := before[s.Name]; ok && b.State == s.State && b.Message == s.Message && b.Attempts == s.Attempts {
			continue
		}
		line := fmt.Sprintf("%s  step %s: %s", at, s.Name, s.State)
		if s.Attempts > 1 {
			line += fmt.Sprintf(" (attempt %d)", s.Attempts)
		}
		if s.Message != "" {
			line += ": " + oneLine(s.Message)
		}
		fmt.Fprintln(w, line)
	}
}

func sameCondition(a, b *conditionStatus) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Status == b.Status && a.Reason == b.Reason && a.Message == b.Message
}
