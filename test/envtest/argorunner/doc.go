// Package argorunner runs Argo Workflows' resource steps in process against a
// real API server, for tests and local development where no kubelet runs and
// Argo's pods therefore cannot. It is test tooling only: nothing under cmd/ or
// internal/ imports it.
//
// A Runner watches Workflows in the Argo namespace and runs each Workflow that
// Argo has not yet touched (status.phase "") exactly once, the way Argo's
// controller and argoexec would:
//
//   - spec.workflowTemplateRef is resolved from the API server and joined
//     with the Workflow by a copy of Argo's wfutil.JoinWorkflowSpec; a missing
//     template marks the Workflow Error with the API server's not-found
//     message, as Argo does. The joined Workflow is checked by Argo's
//     validate.ValidateWorkflow ("invalid spec: ..." on failure).
//   - Global parameters ({{workflow.parameters.*}}, {{workflow.name}}, ...)
//     are built as Argo's setGlobalParameters builds them; templates are
//     substituted with Argo's common.ProcessArgs / common.SubstituteParams
//     and util/template.Replace; withItems / withParam items are expanded as
//     Argo's expandTask / processItem do (including the node names); `when`
//     is evaluated with govaluate exactly as Argo's shouldExecute; `depends` /
//     `dependencies` are resolved by Argo's common.GetTaskDependencies and
//     evaluated with argoexpr.EvalBool, and a dependent task's node hangs from
//     its dependencies' outbound nodes (Argo's getOutboundNodes: a task
//     group's items, a retry's last attempt); templateDefaults are merged into each
//     template with a strategic merge patch as Argo's
//     mergedTemplateDefaultsInto does.
//   - A resource step runs the kubectl binary with the arguments argoexec's
//     getKubectlArguments (workflow/executor/resource.go) builds:
//     `kubectl <action> -f <manifest> -o json`, `delete` with
//     `--ignore-not-found -o name`, `patch` with `--type <mergeStrategy>
//     --patch-file <manifest> -f <manifest> -o json`, plus resource.flags.
//     The only addition is `--kubeconfig`: the runner authenticates with the
//     kubeconfig it is given (the identity a step runs as, normally the
//     provisioner service account), with its default namespace set to the
//     Argo namespace, as the in-cluster configuration of a step pod would.
//   - retryStrategy (from the template or templateDefaults) is honoured with
//     Argo's node structure (a Retry node with one child per attempt), but
//     the backoff is replaced by a short fixed delay (Runner.RetryDelay) so
//     tests stay fast.
//   - status.phase, startedAt, finishedAt, message, progress and nodes are
//     written like Argo writes them. Argo's Workflow CRD has no status
//     subresource, so status is written with a plain update.
//
// Anything else a template may use (container, script, steps, suspend, data,
// http, plugin templates, artifacts, outputs, onExit, hooks, synchronization,
// memoize, templateRef, inline templates, successCondition /
// failureCondition, manifestFrom, withSequence, dag.target, timeouts, ...)
// fails the Workflow with a message naming the field; it is never skipped.
// Fields that only shape the step pod (serviceAccountName, securityContext,
// podSpecPatch, nodeSelector, tolerations, ttlStrategy, podGC, ...) have no
// effect because no pod is created.
package argorunner
