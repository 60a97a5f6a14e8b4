// Package cluster runs, beside an envtest API server, the parts of a cluster
// that nsprov's provisioning needs and envtest lacks: Argo's own
// workflow-controller (built by hack/argo.sh), a process-level kubelet
// (package kubelet) that runs Argo's step pods with argoexec, and
// kube-controller-manager's garbage collector and namespace controllers, so
// that deleting a namespace completes and owned objects go with their owner.
//
// Every process started here is in a process group of its own and dies with
// the test binary (parent-death signal); Stop ends it.
package cluster
