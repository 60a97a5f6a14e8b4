// Package devenv is the local environment of `make dev` and of the README
// walkthrough test: a real kube-apiserver and etcd with nsprov's webhooks,
// controller and the local runner of its workflow steps, and one kubeconfig
// with a context per walkthrough person (admin, alice and bob).
//
// A stopped environment leaves no process or temporary file behind; a run
// that was killed is cleaned up by the next start in the same state directory.
package devenv
