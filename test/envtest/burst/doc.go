// Package burst measures nsprov at scale on the real control plane, then
// runs the Workflows with Argo's own workflow-controller, the process
// kubelet and kube-controller-manager.
//
// TestBurstOfNamespaces creates N requested namespaces through both webhooks
// (N is $NSPROV_BURST, default 200; `NSPROV_BURST=10000` is the figure README
// reports), then starts a provisioning controller facing that backlog and
// waits until every namespace has its Workflow; only then does Argo start.
// On a cluster Argo's step pods run on worker nodes; here they would share
// the 2 cores with the API server and take them from whatever is measured
// beside them. It prints, never asserts:
//   - the admission rate (namespaces per second through both webhooks);
//   - the time until every Workflow exists, and beside it the time a bare
//     client (the controller's client settings and worker count) takes to
//     create as many Workflows of the same content in the same run, and their
//     ratio (the bare client runs first, before the controller starts, in
//     another namespace, which nobody watches);
//   - the API requests nsprov's server sent per namespace (counted on its
//     transport);
//   - the heap the controller's replica added to the process, its policy
//     store included (after a GC: live, what its objects take, and in use,
//     the spans holding them; the slope between two sizes gives the heap
//     per 1,000 namespaces), once every Workflow exists and again after
//     Argo has run ten of them and marked others Pending.
//
// It asserts correctness: every namespace gets exactly one Workflow, and the
// provisioning runs for real. Argo runs every Workflow, but running N of them
// through a process kubelet on a small machine takes far too long (about 8 a
// minute), so Argo's controller is configured with `parallelism` 10, as a
// cluster operator would bound it: Argo runs ten Workflows at a time and
// keeps the others Pending (it writes that on each, which the controller sees,
// as in a cluster). The test waits until ten namespaces are Provisioned=True
// through Argo's controller and argoexec, with their quota applied (a step
// that fails, as argoexec's kubectl can on an overloaded machine, is shown);
// the rest are measured up to their Workflow's creation. Nothing is
// faked: the Pending Workflows are exactly what a cluster with a busy Argo
// holds.
//
// While the controller works through the backlog the test logs, every
// minute, how many Workflows exist, the API requests per Workflow so far and
// the heap, so a run that cannot finish in time (10,000 namespaces on
// a busy machine) still tells how it went. NSPROV_BURST_LOG names a file that
// receives nsprov's server logs (reconcile errors, conflicts);
// NSPROV_BURST_HEAP_PROFILE one that receives the process's heap profile
// once every Workflow exists (with ".before" appended: before the controller
// starts, for `go tool pprof -diff_base`; with ".argo": once Argo has run
// ten).
//
// NSPROV_BURST_SERVER_ARGS adds flags to nsprov's servers (and the bare
// client copies their --kube-api-qps, --kube-api-burst and
// --concurrent-reconciles). NSPROV_BURST_FIXTURES names a directory where a
// provisioned Namespace and its Workflow are written as the API server holds
// them; internal/server/testdata has such a pair for the cache's heap
// benchmark.
package burst
