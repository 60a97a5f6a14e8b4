// Package envtest is nsprov's real-control-plane harness: it starts a real
// kube-apiserver and etcd (controller-runtime envtest, binaries from
// KUBEBUILDER_ASSETS, built by hack/control-plane.sh), serves nsprov's
// webhooks in process over TLS, and registers them with that API server so
// every request is admitted exactly as in a cluster. The package's tests are
// the end-to-end suites; the harness itself is test and dev tooling and never
// ships in the nsprov binary.
package envtest
