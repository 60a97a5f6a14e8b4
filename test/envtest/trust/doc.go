// Package trust checks who nsprov listens to and what it serves after a
// restart: with --client-ca-file only the API server (which presents a client
// certificate from that CA, configured through its admission configuration)
// gets decisions; a replica that starts while the policy directory is broken
// serves the last good bundle saved in the cluster. It starts a control plane
// of its own, without Argo, whose API server authenticates to the webhooks.
package trust
