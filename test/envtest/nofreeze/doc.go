// Package nofreeze checks, on a control plane of its own, that an outage of
// nsprov freezes no namespace: with nsprov's webhook server stopped (and the
// chart's failurePolicy Fail), deleting a provisioned namespace completes,
// since the chart's matchConditions never send the updates of a namespace
// being deleted to nsprov. It stops the server, so it cannot share the main
// suite's.
package nofreeze
