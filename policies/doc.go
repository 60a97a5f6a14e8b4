// Package policies embeds nsprov's default Rego bundle.
//
// The bundle has three entry points, all evaluated against an OPA-style
// admission input (input.request is the AdmissionRequest):
//
//   - data.nsprov.mutation.result: the annotations and labels to set (null removes).
//   - data.nsprov.validation.deny and .warn: violations {"rule", "message"} and warnings.
//   - data.nsprov.plan.plan: the values the provisioning workflow applies.
//
// Admins copy this directory, edit it and point nsprov at the copy with
// --policy-dir; the layout is the same.
package policies
