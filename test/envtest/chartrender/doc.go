// Package chartrender renders nsprov's Helm chart (charts/nsprov) in process
// with Helm's own Go library, as `helm template` would, validating the values
// against the chart's values.schema.json, and lints it as `helm lint` would.
// Tests create the rendered objects on a real API server; the development
// environment installs its WorkflowTemplate, RBAC and webhook configurations
// from it, so what is tested and run is what the chart ships.
package chartrender
