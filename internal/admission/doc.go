// Package admission holds nsprov's mutating and validating admission handlers
// for Namespaces. The webhook configurations that route requests to them live
// in the Helm chart (charts/nsprov/templates/webhook).
//
// Both handlers evaluate the active policy bundle with prepared queries; they
// write nothing to the cluster, so they are safe on dry-run. A malformed
// request answers 400, a policy evaluation error 500, and a denial 403 with
// every violated rule as "rule-id: message".
//
// The Namespace of a request is read by a small direct JSON decoder that
// takes only the fields the policy sees (decisions identical to the
// reflection decoder it falls back on for anything unusual), and the
// webhooks' per-request logger (RequestLogger) adds the request's values
// only when a line is written: outside the policy, a request costs little
// more than controller-runtime's own decoding and answer.
package admission
