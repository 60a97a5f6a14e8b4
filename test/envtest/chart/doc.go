// Package chart tests nsprov's Helm chart (charts/nsprov): Helm's linter, the
// values schema, rendering of the default values and of every
// ci/*-values.yaml, the creation of every rendered object on a real API
// server with Argo's, cert-manager's and OpenReports' CRDs, the RBAC it grants
// (proven with SubjectAccessReviews), and `nsprov serve` running with the
// chart's objects: self-managed certificates that rotate while the API server
// keeps calling the webhooks, and a policy ConfigMap that is hot-reloaded.
// It starts a control plane of its own.
package chart
