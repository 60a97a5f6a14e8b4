// Package pacing tests on the real API server with real Argo that nsprov
// never has more provisioning Workflows running than --max-running-workflows,
// and that the namespaces beyond the bound wait as Queued and are all
// provisioned in the end.
package pacing
