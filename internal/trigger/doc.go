// Package trigger turns an admitted Namespace into provisioning: it builds
// the Argo Workflow that runs the nsprov-provision WorkflowTemplate with the
// policy's plan as arguments. The controller that reconciles Namespaces into
// Workflows and reports progress on them builds on this package.
package trigger
