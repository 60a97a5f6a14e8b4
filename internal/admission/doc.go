// Package admission holds nsprov's mutating and validating admission handlers
// for Namespaces. The webhook configurations that route requests to them live
// in the Helm chart (charts/nsprov/templates/webhook).
//
// Both handlers evaluate the active policy bundle with prepared queries; they
// write nothing to the cluster, so they are safe on dry-run. A malformed
// request answers 400, a policy evaluation error 500, and a denial 403 with
// every violated rule as "rule-id: message".
package admission
