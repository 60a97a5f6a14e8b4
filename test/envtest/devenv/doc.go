// Package devenv is the local environment of `make dev` and of the README
// walkthrough test. It starts a real kube-apiserver and etcd with the Argo and
// OpenReports CRDs, installs what the Helm chart renders
// (the WorkflowTemplate, RBAC, the requester role, the webhook
// configurations, pointed at a local port), runs `nsprov serve` in process
// with the chart Deployment's arguments as nsprov's service account, with
// self-managed certificates, and runs Argo's own workflow-controller, the
// process kubelet that runs its step pods as the provisioner's service
// account, and kube-controller-manager (garbage collector, namespace
// controller). So the chart's RBAC and certificates are
// exercised by every walkthrough run. One kubeconfig has a context per
// walkthrough person (admin, alice and bob).
//
// A stopped environment leaves no process or temporary file behind; a run
// that was killed is cleaned up by the next start in the same state directory.
package devenv
