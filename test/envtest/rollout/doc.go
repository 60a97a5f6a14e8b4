// Package rollout tests on the real API server, with Argo's real
// workflow-controller, that a policy change which alters the plan of every
// one of 1,000 requested namespaces rolls out at the pace nsprov's flags set:
// never more provisioning Workflows unfinished at once than
// --max-running-workflows, the namespaces beyond the bound visibly Queued
// (the condition reason and the nsprov_provisioning_queued gauge), and in
// the end every namespace Provisioned=True with the new plan, provisioned by
// exactly one new Workflow.
//
// The suite runs 2,000 Workflows (1,000 for the requests, 1,000 for the
// change). Their real steps are pods that the process kubelet runs with
// argoexec, about 8 Workflows a minute on a 2-core machine: 2,000 of them
// would take hours. So, for this suite only, the nsprov-provision
// WorkflowTemplate is replaced by a pod-less one of the same name, the same
// parameters and the same workflow-level settings, whose entrypoint is a
// suspend template with a short duration: Argo's own controller still takes
// every Workflow from Pending through Running to Succeeded (and nsprov
// watches it do so), but no pod runs. What the real steps do, and that they
// succeed, is covered by the other suites (test/envtest, lifecycle,
// provisioning and the walkthrough), which run the chart's template.
//
// Argo's controller runs with more API requests per second than its
// defaults (ARGO_QPS, ARGO_BURST, which it reads as its --qps and --burst
// flags), and nsprov with a bound of 80 Workflows, a start rate (100 a
// second) well above what the bound lets through and a higher client rate.
// The step's 10 seconds set the pace: the bound lets through at most 8
// Workflows a second (80 per 10s), about 125s per 1,000 namespaces, and
// nsprov must start Workflows faster than that for the bound to be reached
// at all, which it does even on a busy 2-core machine. A shorter step makes
// the suite quicker on a quiet machine but lets a slow one start Workflows
// more slowly than Argo finishes them: no namespace would ever wait.
package rollout
