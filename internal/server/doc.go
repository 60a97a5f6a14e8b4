// Package server builds nsprov's server: one controller-runtime manager that
// runs the mutating and validating webhooks, the audit sink and its report
// writer, the serving certificate (from files or self-managed), the policy
// store's watcher and reload reporting, and, on the elected leader, the
// provisioning controller and the background namespace audit.
//
// New is the one constructor: `nsprov serve`, `make dev` and the envtest
// harness all build their server with it. Options groups the flags by
// concern, each group with its own AddFlags and Validate.
package server
