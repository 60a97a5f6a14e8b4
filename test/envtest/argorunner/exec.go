package argorunner

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/Knetic/govaluate"
	"github.com/argoproj/argo-workflows/v3/pkg/apis/workflow"
	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	"github.com/argoproj/argo-workflows/v3/util/expr/argoexpr"
	"github.com/argoproj/argo-workflows/v3/util/template"
	"github.com/argoproj/argo-workflows/v3/workflow/common"
	"github.com/argoproj/argo-workflows/v3/workflow/validate"
	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// execution is one run of one Workflow.
type execution struct {
	runner     *Runner
	wf         *wfv1.Workflow
	kubeconfig string

	spec      *wfv1.WorkflowSpec // joined with the template, globals substituted
	templates map[string]*wfv1.Template
	globals   common.Parameters
	sem       chan struct{} // spec.parallelism

	mu      sync.Mutex // guards the fields below
	status  wfv1.WorkflowStatus
	nodes   wfv1.Nodes
	failure string // the last failed step and its message

	writeMu sync.Mutex
	kick    chan struct{} // asks the flusher to write the status
}

func (x *execution) key() client.ObjectKey { return client.ObjectKeyFromObject(x.wf) }

func (x *execution) log(ctx context.Context) logr.Logger {
	return logr.FromContextOrDiscard(ctx).WithName("argorunner").WithValues("workflow", x.wf.Name)
}

// finish records the end of the workflow.
func (x *execution) finish(ctx context.Context, phase wfv1.WorkflowPhase, message string) error {
	x.mu.Lock()
	t := now()
	if x.status.StartedAt.IsZero() {
		x.status.StartedAt = t
	}
	x.status.Phase = phase
	x.status.Message = message
	x.status.FinishedAt = t
	x.mu.Unlock()
	x.log(ctx).Info("workflow finished", "phase", phase, "message", message)
	return x.flush(ctx)
}

// flush writes the current status.
func (x *execution) flush(ctx context.Context) error {
	x.writeMu.Lock()
	defer x.writeMu.Unlock()
	x.mu.Lock()
	st := x.status.DeepCopy()
	if len(x.nodes) > 0 {
		st.Nodes = wfv1.Nodes{}
		for id, n := range x.nodes {
			st.Nodes[id] = *n.DeepCopy()
		}
	}
	st.Progress = progress(x.nodes)
	x.mu.Unlock()
	// The API server may outlive ctx by a little; a write that records the
	// end of a run should not be lost to cancellation of the caller.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	return x.runner.writeStatus(wctx, x.key(), st)
}

// progress is Argo's "succeeded pods / all pods".
func progress(nodes wfv1.Nodes) wfv1.Progress {
	var done, total int64
	for _, n := range nodes {
		if n.Type != wfv1.NodeTypePod {
			continue
		}
		total++
		if n.Phase == wfv1.NodeSucceeded {
			done++
		}
	}
	if total == 0 {
		return ""
	}
	return wfv1.Progress(fmt.Sprintf("%d/%d", done, total))
}

func (x *execution) run(ctx context.Context) error {
	if err := x.prepare(ctx); err != nil {
		var phaseErr *phaseError
		if errors.As(err, &phaseErr) {
			if ferr := x.finish(ctx, phaseErr.phase, phaseErr.msg); ferr != nil {
				return ferr
			}
			return nil
		}
		return err
	}

	x.mu.Lock()
	x.status.Phase = wfv1.WorkflowRunning
	x.status.StartedAt = now()
	x.mu.Unlock()
	if err := x.flush(ctx); err != nil {
		return err
	}
	x.globals[common.GlobalVarWorkflowStatus] = string(wfv1.WorkflowRunning)

	x.kick = make(chan struct{}, 1)
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		x.flusher(ctx, stop)
	}()
	root := x.executeTemplate(ctx, x.wf.Name, x.wf.Name, x.spec.Entrypoint, x.spec.Arguments, "", nil)
	close(stop)
	<-stopped
	if ctx.Err() != nil {
		return x.finish(ctx, wfv1.WorkflowFailed, "the local Argo runner was stopped")
	}
	switch root.Phase {
	case wfv1.NodeSucceeded:
		return x.finish(ctx, wfv1.WorkflowSucceeded, "")
	case wfv1.NodeError:
		return x.finish(ctx, wfv1.WorkflowError, x.failureMessage(root))
	default:
		return x.finish(ctx, wfv1.WorkflowFailed, x.failureMessage(root))
	}
}

func (x *execution) failureMessage(root *wfv1.NodeStatus) string {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.failure != "" {
		return x.failure
	}
	return root.Message
}

type phaseError struct {
	phase wfv1.WorkflowPhase
	msg   string
}

func (e *phaseError) Error() string { return e.msg }

// prepare joins the Workflow with its template, validates it, refuses what
// the runner does not implement, and builds the global parameters, as
// Argo's setExecWorkflow does.
func (x *execution) prepare(ctx context.Context) error {
	wf := x.wf
	spec := wf.Spec.DeepCopy()
	if ref := wf.Spec.WorkflowTemplateRef; ref != nil {
		if ref.ClusterScope {
			return &phaseError{wfv1.WorkflowFailed, (&UnsupportedError{Field: "spec.workflowTemplateRef.clusterScope"}).Error()}
		}
		wft := &wfv1.WorkflowTemplate{}
		if err := x.runner.client.Get(ctx, client.ObjectKey{Namespace: wf.Namespace, Name: ref.Name}, wft); err != nil {
			if apierrors.IsNotFound(err) || apierrors.IsForbidden(err) {
				// Argo's markWorkflowError: phase Error, the API error as message.
				return &phaseError{wfv1.WorkflowError, err.Error()}
			}
			return fmt.Errorf("reading WorkflowTemplate %s/%s: %w", wf.Namespace, ref.Name, err)
		}
		joined, err := joinWorkflowSpec(&wf.Spec, &wft.Spec, nil)
		if err != nil {
			return &phaseError{wfv1.WorkflowError, err.Error()}
		}
		spec = &joined.Spec
	}

	getter := &templateGetter{ctx: ctx, c: x.runner.client, namespace: wf.Namespace}
	if err := validate.ValidateWorkflow(getter, clusterTemplateGetter{}, wf, nil, validate.ValidateOpts{}); err != nil {
		return &phaseError{wfv1.WorkflowFailed, "invalid spec: " + err.Error()}
	}

	x.templates = map[string]*wfv1.Template{}
	merged := make([]wfv1.Template, 0, len(spec.Templates))
	for i := range spec.Templates {
		t := spec.Templates[i].DeepCopy()
		if err := mergeTemplateDefaults(spec, t); err != nil {
			return &phaseError{wfv1.WorkflowError, err.Error()}
		}
		x.templates[t.Name] = t
		merged = append(merged, *t)
	}
	if err := checkSupported(spec, merged); err != nil {
		return &phaseError{wfv1.WorkflowFailed, err.Error()}
	}

	if err := x.setGlobalParameters(spec); err != nil {
		return &phaseError{wfv1.WorkflowFailed, "failed to set global parameters: " + err.Error()}
	}
	// Argo's substituteGlobalVariables: globals into the spec, templates aside.
	templates := spec.Templates
	spec.Templates = nil
	b, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	s, err := template.Replace(string(b), x.globals, true)
	if err != nil {
		return &phaseError{wfv1.WorkflowError, err.Error()}
	}
	resolved := &wfv1.WorkflowSpec{}
	if err := json.Unmarshal([]byte(s), resolved); err != nil {
		return err
	}
	resolved.Templates = templates
	x.spec = resolved
	if p := resolved.Parallelism; p != nil && *p > 0 {
		x.sem = make(chan struct{}, *p)
	}
	return nil
}

// setGlobalParameters mirrors Argo's wfOperationCtx.setGlobalParameters for
// what a Workflow without outputs or cron schedule can reference.
func (x *execution) setGlobalParameters(spec *wfv1.WorkflowSpec) error {
	wf := x.wf
	g := common.Parameters{}
	g[common.GlobalVarWorkflowName] = wf.Name
	g[common.GlobalVarWorkflowNamespace] = wf.Namespace
	g[common.GlobalVarWorkflowMainEntrypoint] = spec.Entrypoint
	g[common.GlobalVarWorkflowServiceAccountName] = spec.ServiceAccountName
	g[common.GlobalVarWorkflowUID] = string(wf.UID)
	g[common.GlobalVarWorkflowCreationTimestamp] = wf.CreationTimestamp.Format(time.RFC3339)
	g[common.GlobalVarWorkflowCreationTimestamp+".s"] = strconv.FormatInt(wf.CreationTimestamp.Unix(), 10)
	g[common.GlobalVarWorkflowCreationTimestamp+".RFC3339"] = wf.CreationTimestamp.Format(time.RFC3339)
	if spec.Priority != nil {
		g[common.GlobalVarWorkflowPriority] = strconv.Itoa(int(*spec.Priority))
	}
	if b, err := json.Marshal(spec.Arguments.Parameters); err == nil {
		g[common.GlobalVarWorkflowParameters] = string(b)
		g[common.GlobalVarWorkflowParametersJSON] = string(b)
	}
	for _, p := range spec.Arguments.Parameters {
		switch {
		case p.Value != nil:
			g["workflow.parameters."+p.Name] = p.Value.String()
		case p.ValueFrom != nil:
			return &UnsupportedError{Field: fmt.Sprintf("spec.arguments.parameters[%s].valueFrom", p.Name)}
		default:
			return fmt.Errorf("either value or valueFrom must be specified in order to set global parameter %s", p.Name)
		}
	}
	if b, err := json.Marshal(wf.Annotations); err == nil {
		g[common.GlobalVarWorkflowAnnotations] = string(b)
		g[common.GlobalVarWorkflowAnnotationsJSON] = string(b)
	}
	for k, v := range wf.Annotations {
		g["workflow.annotations."+k] = v
	}
	if b, err := json.Marshal(wf.Labels); err == nil {
		g[common.GlobalVarWorkflowLabels] = string(b)
		g[common.GlobalVarWorkflowLabelsJSON] = string(b)
	}
	for k, v := range wf.Labels {
		g["workflow.labels."+k] = v
	}
	x.globals = g
	return nil
}

// mergeTemplateDefaults is Argo's mergedTemplateDefaultsInto.
func mergeTemplateDefaults(spec *wfv1.WorkflowSpec, t *wfv1.Template) error {
	if spec.TemplateDefaults == nil {
		return nil
	}
	typ := t.GetType()
	defaults, err := json.Marshal(spec.TemplateDefaults)
	if err != nil {
		return err
	}
	target, err := json.Marshal(t)
	if err != nil {
		return err
	}
	out, err := strategicpatch.StrategicMergePatch(defaults, target, wfv1.Template{})
	if err != nil {
		return err
	}
	if err := json.Unmarshal(out, t); err != nil {
		return err
	}
	t.SetType(typ)
	return nil
}

// ---- nodes ----

func (x *execution) initNode(name, displayName string, typ wfv1.NodeType, templateName, boundaryID string, phase wfv1.NodePhase, message string) *wfv1.NodeStatus {
	x.mu.Lock()
	defer x.mu.Unlock()
	id := x.wf.NodeID(name)
	n := wfv1.NodeStatus{
		ID: id, Name: name, DisplayName: displayName, Type: typ, TemplateName: templateName,
		BoundaryID: boundaryID, Phase: phase, Message: message, StartedAt: now(),
	}
	if phase.Fulfilled(nil) {
		n.FinishedAt = n.StartedAt
	}
	x.nodes[id] = n
	return &n
}

func (x *execution) addChild(parentName, childName string) {
	x.mu.Lock()
	defer x.mu.Unlock()
	pid, cid := x.wf.NodeID(parentName), x.wf.NodeID(childName)
	p, ok := x.nodes[pid]
	if !ok {
		return
	}
	for _, c := range p.Children {
		if c == cid {
			return
		}
	}
	p.Children = append(p.Children, cid)
	x.nodes[pid] = p
}

func (x *execution) markNode(name string, phase wfv1.NodePhase, message string) *wfv1.NodeStatus {
	x.mu.Lock()
	defer x.mu.Unlock()
	id := x.wf.NodeID(name)
	n := x.nodes[id]
	n.Phase = phase
	n.Message = message
	if phase.Fulfilled(nil) {
		n.FinishedAt = now()
	}
	x.nodes[id] = n
	return &n
}

func (x *execution) node(name string) *wfv1.NodeStatus {
	x.mu.Lock()
	defer x.mu.Unlock()
	n, ok := x.nodes[x.wf.NodeID(name)]
	if !ok {
		return nil
	}
	return &n
}

// flushLogged asks for the status to be written soon; writes are coalesced
// so parallel steps do not queue up updates of the same object.
func (x *execution) flushLogged(ctx context.Context) {
	if x.kick == nil {
		x.flushNow(ctx)
		return
	}
	select {
	case x.kick <- struct{}{}:
	default:
	}
}

func (x *execution) flushNow(ctx context.Context) {
	if err := x.flush(ctx); err != nil && !errors.Is(err, errWorkflowGone) {
		x.log(ctx).Error(err, "writing workflow status")
	}
}

// flusher writes the status when asked, at most every 100ms, until stop.
func (x *execution) flusher(ctx context.Context, stop <-chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-x.kick:
			x.flushNow(ctx)
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

// errorNode records a node that could not run.
func (x *execution) errorNode(ctx context.Context, name, displayName string, typ wfv1.NodeType, templateName, boundaryID string, err error) *wfv1.NodeStatus {
	n := x.initNode(name, displayName, typ, templateName, boundaryID, wfv1.NodeError, err.Error())
	x.mu.Lock()
	x.failure = fmt.Sprintf("step %s errored: %s", displayName, err)
	x.mu.Unlock()
	x.flushLogged(ctx)
	return n
}

// ---- templates ----

// executeTemplate follows Argo's executeTemplate: resolve, merge defaults
// (done in prepare), ProcessArgs, then retries around the template type.
func (x *execution) executeTemplate(ctx context.Context, nodeName, displayName, tmplName string, args wfv1.Arguments, boundaryID string, local map[string]string) *wfv1.NodeStatus {
	tmpl, ok := x.templates[tmplName]
	if !ok {
		return x.errorNode(ctx, nodeName, displayName, wfv1.NodeTypeSkipped, tmplName, boundaryID, fmt.Errorf("template %q not found", tmplName))
	}
	rs := tmpl.RetryStrategy
	if rs == nil {
		rs = x.spec.RetryStrategy
	}
	localParams := map[string]string{}
	for k, v := range local {
		localParams[k] = v
	}
	if tmpl.IsPodType() && rs == nil {
		localParams[common.LocalVarPodName] = x.podName(nodeName, tmpl.Name)
	}
	localParams["node.name"] = nodeName
	processed, err := common.ProcessArgs(tmpl, &args, x.globals, localParams, false, x.wf.Namespace, nil)
	if err != nil {
		return x.errorNode(ctx, nodeName, displayName, tmpl.GetNodeType(), tmplName, boundaryID, err)
	}
	if rs == nil {
		return x.executeType(ctx, nodeName, displayName, processed, boundaryID)
	}

	limit := -1
	if rs.Limit != nil {
		limit = rs.Limit.IntValue()
	}
	if limit < 0 {
		return x.errorNode(ctx, nodeName, displayName, wfv1.NodeTypeRetry, tmplName, boundaryID,
			&UnsupportedError{Field: "retryStrategy without a limit (retrying forever)"})
	}
	x.initNode(nodeName, displayName, wfv1.NodeTypeRetry, tmplName, boundaryID, wfv1.NodeRunning, "")
	var last *wfv1.NodeStatus
	for attempt := 0; ; attempt++ {
		childName := fmt.Sprintf("%s(%d)", nodeName, attempt)
		lp := map[string]string{"node.name": childName}
		for k, v := range local {
			lp[k] = v
		}
		if processed.IsPodType() {
			lp[common.LocalVarPodName] = x.podName(childName, processed.Name)
		}
		lp[common.LocalVarRetries] = strconv.Itoa(attempt)
		lp[common.LocalVarRetriesLastExitCode], lp[common.LocalVarRetriesLastDuration] = "0", "0"
		lp[common.LocalVarRetriesLastStatus], lp[common.LocalVarRetriesLastMessage] = "", ""
		if last != nil {
			lp[common.LocalVarRetriesLastStatus] = string(last.Phase)
			lp[common.LocalVarRetriesLastMessage] = last.Message
			lp[common.LocalVarRetriesLastDuration] = fmt.Sprint(last.FinishedAt.Sub(last.StartedAt.Time).Seconds())
		}
		attemptTmpl, err := common.SubstituteParams(processed, x.globals, lp)
		if err != nil {
			last = x.errorNode(ctx, childName, fmt.Sprintf("%s(%d)", displayName, attempt), processed.GetNodeType(), tmplName, boundaryID, err)
			x.addChild(nodeName, childName)
			break
		}
		x.addChild(nodeName, childName)
		last = x.executeType(ctx, childName, fmt.Sprintf("%s(%d)", displayName, attempt), attemptTmpl, boundaryID, func() { x.addChild(nodeName, childName) })
		if last.Phase == wfv1.NodeSucceeded || attempt >= limit || !retryable(rs.RetryPolicy, last.Phase) || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(x.runner.retryDelay()):
		}
	}
	n := x.markNode(nodeName, last.Phase, last.Message)
	if processed.GetType() == wfv1.TemplateTypeResource && last.FailedOrError() {
		x.mu.Lock()
		x.failure = fmt.Sprintf("step %s failed: %s", displayName, last.Message)
		x.mu.Unlock()
	}
	x.flushLogged(ctx)
	return n
}

func retryable(policy wfv1.RetryPolicy, phase wfv1.NodePhase) bool {
	switch policy {
	case wfv1.RetryPolicyAlways:
		return phase.FailedOrError()
	case wfv1.RetryPolicyOnError:
		return phase == wfv1.NodeError
	default: // OnFailure is Argo's default
		return phase == wfv1.NodeFailed
	}
}

func (x *execution) podName(nodeName, templateName string) string {
	return generatePodName(x.wf.Name, nodeName, templateName)
}

// executeType runs a processed template. after, when given, runs once the
// node exists (to link it to a parent).
func (x *execution) executeType(ctx context.Context, nodeName, displayName string, tmpl *wfv1.Template, boundaryID string, after ...func()) *wfv1.NodeStatus {
	switch tmpl.GetType() {
	case wfv1.TemplateTypeResource:
		return x.executeResource(ctx, nodeName, displayName, tmpl, boundaryID, after...)
	case wfv1.TemplateTypeDAG:
		return x.executeDAG(ctx, nodeName, displayName, tmpl, boundaryID, after...)
	default:
		return x.errorNode(ctx, nodeName, displayName, tmpl.GetNodeType(), tmpl.Name, boundaryID,
			&UnsupportedError{Field: fmt.Sprintf("spec.templates[%s] of type %s", tmpl.Name, tmpl.GetType())})
	}
}

// ---- resource steps ----

func (x *execution) executeResource(ctx context.Context, nodeName, displayName string, tmpl *wfv1.Template, boundaryID string, after ...func()) *wfv1.NodeStatus {
	x.initNode(nodeName, displayName, wfv1.NodeTypePod, tmpl.Name, boundaryID, wfv1.NodeRunning, "")
	for _, f := range after {
		f()
	}
	x.flushLogged(ctx)

	fail := func(phase wfv1.NodePhase, msg string) *wfv1.NodeStatus {
		n := x.markNode(nodeName, phase, msg)
		x.mu.Lock()
		x.failure = fmt.Sprintf("step %s failed: %s", displayName, msg)
		x.mu.Unlock()
		x.flushLogged(ctx)
		return n
	}
	res := tmpl.Resource.DeepCopy()
	for _, s := range append([]string{res.Manifest}, res.Flags...) {
		if tag := unresolved(s); tag != "" {
			return fail(wfv1.NodeError, fmt.Sprintf("unresolved variable %s in template %s (outputs of other steps and other variables the local Argo runner does not provide are not supported)", tag, tmpl.Name))
		}
	}
	// Argo's executeResource: setOwnerReference makes the Workflow the controller.
	if res.SetOwnerReference {
		obj := unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(res.Manifest), &obj); err != nil {
			return fail(wfv1.NodeError, err.Error())
		}
		refs := obj.GetOwnerReferences()
		obj.SetOwnerReferences(append(refs, *metav1.NewControllerRef(x.wf, wfv1.SchemeGroupVersion.WithKind(workflow.WorkflowKind))))
		b, err := yaml.Marshal(obj.Object)
		if err != nil {
			return fail(wfv1.NodeError, err.Error())
		}
		res.Manifest = string(b)
	}

	dir, err := os.MkdirTemp("", "argorunner-step-")
	if err != nil {
		return fail(wfv1.NodeError, err.Error())
	}
	defer os.RemoveAll(dir)
	// argoexec's StageFiles writes the manifest to common.ExecutorResourceManifestPath.
	manifestPath := filepath.Join(dir, filepath.Base(common.ExecutorResourceManifestPath))
	if err := os.WriteFile(manifestPath, []byte(res.Manifest), 0o600); err != nil {
		return fail(wfv1.NodeError, err.Error())
	}
	args, err := kubectlArguments(res, manifestPath)
	if err != nil {
		return fail(wfv1.NodeFailed, err.Error())
	}

	if x.sem != nil {
		select {
		case x.sem <- struct{}{}:
			defer func() { <-x.sem }()
		case <-ctx.Done():
			return fail(wfv1.NodeFailed, ctx.Err().Error())
		}
	}
	argv := append([]string{"--kubeconfig", x.kubeconfig}, args[1:]...)
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, x.runner.kubectl, argv...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	x.log(ctx).V(1).Info("kubectl", "step", displayName, "args", strings.Join(args, " "))
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		return fail(wfv1.NodeFailed, msg)
	}
	// What argoexec's ExecResource checks of kubectl's output.
	action := res.Action
	if action != "delete" && !(action == "get" && stdout.Len() == 0) {
		obj := unstructured.Unstructured{}
		if err := json.Unmarshal(stdout.Bytes(), &obj); err != nil {
			return fail(wfv1.NodeFailed, err.Error())
		}
		if obj.GetName() == "" || obj.GroupVersionKind().Kind == "" {
			return fail(wfv1.NodeFailed, "Kind and name are both required but at least one of them is missing from the manifest")
		}
	}
	n := x.markNode(nodeName, wfv1.NodeSucceeded, "")
	x.flushLogged(ctx)
	return n
}

// kubectlArguments is a faithful copy of argoexec's
// WorkflowExecutor.getKubectlArguments (workflow/executor/resource.go,
// Argo v3.7.3), which is unexported: the arguments start with "kubectl".
func kubectlArguments(res *wfv1.ResourceTemplate, manifestPath string) ([]string, error) {
	action, flags := res.Action, res.Flags
	buff, err := os.ReadFile(filepath.Clean(manifestPath))
	if err != nil {
		return nil, err
	}
	if len(buff) == 0 && len(flags) == 0 {
		return nil, errors.New("Must provide at least one of flags or manifest.")
	}

	args := []string{
		"kubectl",
		action,
	}
	output := "json"

	if action == "delete" {
		args = append(args, "--ignore-not-found")
		output = "name"
	}

	appendFileFlag := true
	if action == "patch" {
		mergeStrategy := "strategic"
		if res.MergeStrategy != "" {
			mergeStrategy = res.MergeStrategy
		}
		args = append(args, "--type")
		args = append(args, mergeStrategy)

		args = append(args, "--patch-file")
		args = append(args, manifestPath)

		if mergeStrategy == "json" {
			appendFileFlag = false
		} else {
			var obj map[string]interface{}
			err = yaml.Unmarshal(buff, &obj)
			if err != nil {
				return nil, err
			}
			if len(flags) != 0 && obj["kind"] == nil {
				appendFileFlag = false
			}
		}
	}

	if len(flags) != 0 {
		args = append(args, flags...)
	}

	if len(buff) != 0 && appendFileFlag {
		args = append(args, "-f")
		args = append(args, manifestPath)
	}
	args = append(args, "-o")
	args = append(args, output)

	return args, nil
}

// ---- DAGs ----

type dagContext struct {
	tasks []wfv1.DAGTask
}

func (d *dagContext) GetTask(name string) *wfv1.DAGTask {
	for i := range d.tasks {
		if d.tasks[i].Name == name {
			return &d.tasks[i]
		}
	}
	return nil
}

func (d *dagContext) GetTaskDependencies(name string) []string {
	deps, _ := common.GetTaskDependencies(d.GetTask(name), d)
	out := make([]string, 0, len(deps))
	for dep := range deps {
		out = append(out, dep)
	}
	sort.Strings(out)
	return out
}

func (d *dagContext) GetTaskFinishedAtTime(string) time.Time { return time.Time{} }

type taskState struct {
	done chan struct{}
	node *wfv1.NodeStatus // nil when the task never started (fail fast)
}

// TaskResults is what Argo's evaluateDependsLogic offers the depends
// expression for each dependency.
type taskResults struct {
	Succeeded    bool `json:"Succeeded"`
	Failed       bool `json:"Failed"`
	Errored      bool `json:"Errored"`
	Skipped      bool `json:"Skipped"`
	Omitted      bool `json:"Omitted"`
	Daemoned     bool `json:"Daemoned"`
	AnySucceeded bool `json:"AnySucceeded"`
	AllFailed    bool `json:"AllFailed"`
}

func (x *execution) executeDAG(ctx context.Context, nodeName, displayName string, tmpl *wfv1.Template, boundaryID string, after ...func()) *wfv1.NodeStatus {
	dag := x.initNode(nodeName, displayName, wfv1.NodeTypeDAG, tmpl.Name, boundaryID, wfv1.NodeRunning, "")
	for _, f := range after {
		f()
	}
	x.flushLogged(ctx)
	dctx := &dagContext{tasks: tmpl.DAG.Tasks}
	failFast := tmpl.DAG.FailFast == nil || *tmpl.DAG.FailFast

	states := map[string]*taskState{}
	for _, t := range tmpl.DAG.Tasks {
		states[t.Name] = &taskState{done: make(chan struct{})}
	}
	var (
		failMu sync.Mutex
		failed bool
		wg     sync.WaitGroup
	)
	for i := range tmpl.DAG.Tasks {
		task := tmpl.DAG.Tasks[i]
		st := states[task.Name]
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(st.done)
			deps, logic := common.GetTaskDependencies(&task, dctx)
			for dep := range deps {
				ds, ok := states[dep]
				if !ok {
					st.node = x.errorNode(ctx, nodeName+"."+task.Name, task.Name, wfv1.NodeTypeSkipped, task.Template, dag.ID, fmt.Errorf("task %s depends on unknown task %s", task.Name, dep))
					return
				}
				select {
				case <-ds.done:
				case <-ctx.Done():
					return
				}
			}
			// Like Argo, fail fast stops tasks that wait for others; the
			// tasks ready at the start are all launched together.
			failMu.Lock()
			stop := failFast && failed && len(deps) > 0
			failMu.Unlock()
			if stop || ctx.Err() != nil {
				return
			}
			taskNodeName := nodeName + "." + task.Name
			parents := []string{nodeName}
			if logic != "" {
				parents = parents[:0]
				scope := map[string]taskResults{}
				for dep := range deps {
					dn := states[dep].node
					if dn == nil {
						return // a dependency never ran (fail fast): neither does this
					}
					parents = append(parents, x.outbound(dn.Name)...)
					scope[strings.ReplaceAll(dep, "-", "_")] = x.results(dn)
				}
				execute, err := argoexpr.EvalBool(strings.ReplaceAll(logic, "-", "_"), scope)
				if err != nil {
					st.node = x.errorNode(ctx, taskNodeName, task.Name, wfv1.NodeTypeSkipped, task.Template, dag.ID, fmt.Errorf("unable to evaluate expression '%s': %s", logic, err))
					x.link(parents, taskNodeName)
					return
				}
				if !execute {
					st.node = x.initNode(taskNodeName, task.Name, wfv1.NodeTypeSkipped, task.Template, dag.ID, wfv1.NodeOmitted, "omitted: depends condition not met")
					x.link(parents, taskNodeName)
					x.flushLogged(ctx)
					return
				}
			}
			st.node = x.executeDAGTask(ctx, tmpl, nodeName, dag.ID, &task, parents, states)
			if st.node != nil && st.node.FailedOrError() && !task.ContinuesOn(st.node.Phase) {
				failMu.Lock()
				failed = true
				failMu.Unlock()
			}
		}()
	}
	wg.Wait()

	phase, msg := x.assessDAG(tmpl, states, dctx)
	n := x.markNode(nodeName, phase, msg)
	x.flushLogged(ctx)
	return n
}

// outbound is Argo's getOutboundNodes by node name: the nodes a task that
// depends on this one hangs from. A task group's are its items', a retry's
// its last attempt.
func (x *execution) outbound(name string) []string {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.outboundOf(x.wf.NodeID(name))
}

func (x *execution) outboundOf(id string) []string {
	n, ok := x.nodes[id]
	if !ok {
		return nil
	}
	switch n.Type {
	case wfv1.NodeTypeSkipped, wfv1.NodeTypeSuspend, wfv1.NodeTypeHTTP, wfv1.NodeTypePlugin, wfv1.NodeTypePod:
		return []string{n.Name}
	case wfv1.NodeTypeContainer, wfv1.NodeTypeTaskGroup:
		if len(n.Children) == 0 {
			return []string{n.Name}
		}
		var out []string
		for _, c := range n.Children {
			out = append(out, x.outboundOf(c)...)
		}
		return out
	case wfv1.NodeTypeRetry:
		if len(n.Children) > 0 {
			if last, ok := x.nodes[n.Children[len(n.Children)-1]]; ok {
				return []string{last.Name}
			}
		}
	}
	var out []string
	for _, o := range n.OutboundNodes {
		out = append(out, x.outboundOf(o)...)
	}
	return out
}

func (x *execution) link(parents []string, child string) {
	for _, p := range parents {
		x.addChild(p, child)
	}
}

func (x *execution) results(n *wfv1.NodeStatus) taskResults {
	r := taskResults{
		Succeeded: n.Phase == wfv1.NodeSucceeded,
		Failed:    n.Phase == wfv1.NodeFailed,
		Errored:   n.Phase == wfv1.NodeError,
		Skipped:   n.Phase == wfv1.NodeSkipped,
		Omitted:   n.Phase == wfv1.NodeOmitted,
	}
	if n.Type == wfv1.NodeTypeTaskGroup {
		x.mu.Lock()
		r.AllFailed = len(n.Children) > 0
		for _, c := range n.Children {
			child := x.nodes[c]
			r.AnySucceeded = r.AnySucceeded || child.Phase == wfv1.NodeSucceeded
			r.AllFailed = r.AllFailed && child.Phase == wfv1.NodeFailed
		}
		x.mu.Unlock()
	}
	return r
}

// assessDAG mirrors Argo's assessDAGPhase: the target tasks are the leaves;
// an omitted or skipped task inherits the phase of its branch, preferring
// Failed or Error; a task that never started (fail fast) leaves the DAG
// failed by the task that stopped it.
func (x *execution) assessDAG(tmpl *wfv1.Template, states map[string]*taskState, dctx *dagContext) (wfv1.NodePhase, string) {
	branch := map[string]wfv1.NodePhase{}
	var phaseOf func(name string) wfv1.NodePhase
	phaseOf = func(name string) wfv1.NodePhase {
		if p, ok := branch[name]; ok {
			return p
		}
		p := wfv1.NodeSucceeded
		for _, dep := range dctx.GetTaskDependencies(name) {
			if dp := phaseOf(dep); dp.FailedOrError() {
				p = dp
			}
		}
		if n := states[name].node; n != nil && n.Phase.Completed() {
			p = n.Phase
		}
		branch[name] = p
		return p
	}
	leaves := map[string]bool{}
	for _, t := range tmpl.DAG.Tasks {
		leaves[t.Name] = true
	}
	for _, t := range tmpl.DAG.Tasks {
		for _, dep := range dctx.GetTaskDependencies(t.Name) {
			leaves[dep] = false
		}
	}
	names := make([]string, 0, len(tmpl.DAG.Tasks))
	for _, t := range tmpl.DAG.Tasks {
		names = append(names, t.Name)
	}
	sort.Strings(names)
	for _, name := range names {
		n := states[name].node
		if n != nil && n.FailedOrError() && !dctx.GetTask(name).ContinuesOn(n.Phase) && leaves[name] {
			return n.Phase, fmt.Sprintf("child '%s' failed", n.ID)
		}
		if !leaves[name] {
			continue
		}
		if p := phaseOf(name); p.FailedOrError() && !dctx.GetTask(name).ContinuesOn(p) {
			return p, "a dependency of task " + name + " failed"
		}
	}
	// Non-leaf failures that nothing handled (a dependent that never ran).
	for _, name := range names {
		n := states[name].node
		if n != nil && n.FailedOrError() && !dctx.GetTask(name).ContinuesOn(n.Phase) {
			for _, other := range names {
				if states[other].node == nil {
					return n.Phase, fmt.Sprintf("child '%s' failed", n.ID)
				}
			}
		}
	}
	return wfv1.NodeSucceeded, ""
}

// executeDAGTask follows Argo's executeDAGTask once the dependencies allow
// the task: substitute, expand items, evaluate when, execute.
func (x *execution) executeDAGTask(ctx context.Context, dagTmpl *wfv1.Template, dagName, dagID string, task *wfv1.DAGTask, parents []string, states map[string]*taskState) *wfv1.NodeStatus {
	nodeName := dagName + "." + task.Name
	fail := func(err error) *wfv1.NodeStatus {
		n := x.errorNode(ctx, nodeName, task.Name, wfv1.NodeTypeSkipped, task.Template, dagID, err)
		x.link(parents, nodeName)
		return n
	}
	// resolveDependencyReferences: globals and the DAG's local scope.
	scope := common.Parameters{}
	for _, p := range dagTmpl.Inputs.Parameters {
		if p.Value != nil {
			scope["inputs.parameters."+p.Name] = p.Value.String()
		}
	}
	for _, p := range parents {
		if p == dagName {
			continue
		}
		if n := x.node(p); n != nil {
			base := strings.TrimPrefix(n.Name, dagName+".")
			scope["tasks."+base+".id"] = n.ID
			scope["tasks."+base+".status"] = string(n.Phase)
			scope["tasks."+base+".startedAt"] = n.StartedAt.Format(time.RFC3339)
			if !n.FinishedAt.IsZero() {
				scope["tasks."+base+".finishedAt"] = n.FinishedAt.Format(time.RFC3339)
			}
		}
	}
	b, err := json.Marshal(task)
	if err != nil {
		return fail(err)
	}
	s, err := template.Replace(string(b), x.globals.Merge(scope), true)
	if err != nil {
		return fail(err)
	}
	var newTask wfv1.DAGTask
	if err := json.Unmarshal([]byte(s), &newTask); err != nil {
		return fail(err)
	}
	expanded, err := expandTask(newTask)
	if err != nil {
		return fail(err)
	}

	if task.ShouldExpand() {
		if len(expanded) == 0 {
			n := x.initNode(nodeName, task.Name, wfv1.NodeTypeSkipped, task.Template, dagID, wfv1.NodeSkipped, "Skipped, empty params")
			x.link(parents, nodeName)
			x.flushLogged(ctx)
			return n
		}
		x.initNode(nodeName, task.Name, wfv1.NodeTypeTaskGroup, task.Template, dagID, wfv1.NodeRunning, "")
		x.link(parents, nodeName)
		parents = []string{nodeName}
	}

	nodes := make([]*wfv1.NodeStatus, len(expanded))
	var wg sync.WaitGroup
	for i := range expanded {
		t := expanded[i]
		wg.Add(1)
		go func() {
			defer wg.Done()
			taskNodeName := dagName + "." + t.Name
			proceed, err := shouldExecute(t.When)
			if err != nil {
				nodes[i] = x.errorNode(ctx, taskNodeName, t.Name, wfv1.NodeTypeSkipped, t.Template, dagID, err)
				x.link(parents, taskNodeName)
				return
			}
			if !proceed {
				nodes[i] = x.initNode(taskNodeName, t.Name, wfv1.NodeTypeSkipped, t.Template, dagID, wfv1.NodeSkipped, fmt.Sprintf("when '%s' evaluated false", t.When))
				x.link(parents, taskNodeName)
				x.flushLogged(ctx)
				return
			}
			nodes[i] = x.executeTemplateLinked(ctx, taskNodeName, t.Name, t.Template, t.Arguments, dagID, map[string]string{"tasks.name": t.Name}, parents)
		}()
	}
	wg.Wait()

	if !task.ShouldExpand() {
		return nodes[0]
	}
	phase := wfv1.NodeSucceeded
	for _, n := range nodes {
		if n.FailedOrError() {
			phase = n.Phase
		}
	}
	n := x.markNode(nodeName, phase, "")
	x.flushLogged(ctx)
	return n
}

// executeTemplateLinked links the node executeTemplate creates to its
// parents (Argo's connectDependencies) and runs it.
func (x *execution) executeTemplateLinked(ctx context.Context, nodeName, displayName, tmplName string, args wfv1.Arguments, boundaryID string, local map[string]string, parents []string) *wfv1.NodeStatus {
	x.link(parents, nodeName)
	return x.executeTemplate(ctx, nodeName, displayName, tmplName, args, boundaryID, local)
}

// expandTask is Argo's expandTask (workflow/controller/dag.go), which is
// unexported; withSequence is refused by checkSupported.
func expandTask(task wfv1.DAGTask) ([]wfv1.DAGTask, error) {
	var err error
	var items []wfv1.Item
	if len(task.WithItems) > 0 {
		items = task.WithItems
	} else if task.WithParam != "" {
		err = json.Unmarshal([]byte(task.WithParam), &items)
		if err != nil {
			mustExec, mustExecErr := shouldExecute(task.When)
			if mustExecErr != nil || mustExec {
				return nil, fmt.Errorf("withParam value could not be parsed as a JSON list: %s: %v", strings.TrimSpace(task.WithParam), err)
			}
		}
	} else {
		return []wfv1.DAGTask{task}, nil
	}

	taskBytes, err := json.Marshal(task)
	if err != nil {
		return nil, err
	}
	task.WithItems = nil
	task.WithParam = ""
	task.WithSequence = nil

	tmpl, err := template.NewTemplate(string(taskBytes))
	if err != nil {
		return nil, fmt.Errorf("unable to parse argo variable: %w", err)
	}
	expandedTasks := make([]wfv1.DAGTask, 0)
	for i, item := range items {
		var newTask wfv1.DAGTask
		newTaskName, err := processItem(tmpl, task.Name, i, item, &newTask, task.When)
		if err != nil {
			return nil, err
		}
		newTask.Name = newTaskName
		newTask.Template = task.Template
		expandedTasks = append(expandedTasks, newTask)
	}
	return expandedTasks, nil
}

// processItem is Argo's processItem (workflow/controller/operator.go).
func processItem(tmpl template.Template, name string, index int, item wfv1.Item, obj interface{}, whenCondition string) (string, error) {
	replaceMap := make(map[string]interface{})
	var newName string

	switch item.GetType() {
	case wfv1.String, wfv1.Number, wfv1.Bool:
		replaceMap["item"] = fmt.Sprintf("%v", item)
		newName = generateNodeName(name, index, item)
	case wfv1.Map:
		vals := make([]string, 0)
		mapVal := item.GetMapVal()
		for itemKey, itemVal := range mapVal {
			replaceMap[fmt.Sprintf("item.%s", itemKey)] = fmt.Sprintf("%v", itemVal)
			vals = append(vals, fmt.Sprintf("%s:%v", itemKey, itemVal))
		}
		jsonByteVal, err := json.Marshal(mapVal)
		if err != nil {
			return "", err
		}
		replaceMap["item"] = string(jsonByteVal)
		sort.Strings(vals)
		newName = generateNodeName(name, index, strings.Join(vals, ","))
	case wfv1.List:
		listVal := item.GetListVal()
		byteVal, err := json.Marshal(listVal)
		if err != nil {
			return "", err
		}
		replaceMap["item"] = string(byteVal)
		newName = generateNodeName(name, index, listVal)
	default:
		return "", fmt.Errorf("withItems[%d] expected string, number, list, or map. received: %v", index, item)
	}
	var newStepStr string
	proceed, err := shouldExecute(whenCondition)
	if err == nil && !proceed {
		newStepStr, err = tmpl.Replace(replaceMap, true)
	} else {
		newStepStr, err = tmpl.Replace(replaceMap, false)
	}
	if err != nil {
		return "", err
	}
	if err := json.Unmarshal([]byte(newStepStr), &obj); err != nil {
		return "", err
	}
	return newName, nil
}

func generateNodeName(name string, index int, desc interface{}) string {
	replacer := strings.NewReplacer("(", "", ")", "")
	cleanName := replacer.Replace(fmt.Sprint(desc))
	return fmt.Sprintf("%s(%d:%v)", name, index, cleanName)
}

// shouldExecute is Argo's shouldExecute (workflow/controller/steps.go): the
// already substituted `when` is a govaluate expression whose variables are
// read as strings.
func shouldExecute(when string) (bool, error) {
	if when == "" {
		return true, nil
	}
	expression, err := govaluate.NewEvaluableExpression(when)
	if err != nil {
		if strings.Contains(err.Error(), "Invalid token") {
			return false, fmt.Errorf("Invalid 'when' expression '%s': %v (hint: try wrapping the affected expression in quotes (\"))", when, err)
		}
		return false, fmt.Errorf("Invalid 'when' expression '%s': %v", when, err)
	}
	tokens := expression.Tokens()
	for i, tok := range tokens {
		switch tok.Kind {
		case govaluate.VARIABLE:
			tok.Kind = govaluate.STRING
		default:
			continue
		}
		tokens[i] = tok
	}
	expression, err = govaluate.NewEvaluableExpressionFromTokens(tokens)
	if err != nil {
		return false, fmt.Errorf("Failed to parse 'when' expression '%s': %v", when, err)
	}
	result, err := expression.Evaluate(nil)
	if err != nil {
		return false, fmt.Errorf("Failed to evaluate 'when' expresion '%s': %v", when, err)
	}
	boolRes, ok := result.(bool)
	if !ok {
		return false, fmt.Errorf("Expected boolean evaluation for '%s'. Got %v", when, result)
	}
	return boolRes, nil
}

// ---- template getters for Argo's validation ----

type templateGetter struct {
	ctx       context.Context
	c         client.Client
	namespace string
}

func (g *templateGetter) Get(name string) (*wfv1.WorkflowTemplate, error) {
	t := &wfv1.WorkflowTemplate{}
	if err := g.c.Get(g.ctx, client.ObjectKey{Namespace: g.namespace, Name: name}, t); err != nil {
		return nil, err
	}
	return t, nil
}

type clusterTemplateGetter struct{}

func (clusterTemplateGetter) Get(name string) (*wfv1.ClusterWorkflowTemplate, error) {
	return nil, &UnsupportedError{Field: "ClusterWorkflowTemplate " + name}
}
