// Package contract is the one Go spelling of nsprov's public contract (see
// DESIGN.md, "The user contract"): the annotation and label keys a requester
// writes and those nsprov writes, the Provisioned condition and its reasons,
// the identity nsprov evaluates the policy as, and the typed Plan that the
// policy's data.nsprov.plan.plan produces and the provisioning Workflow
// consumes.
//
// The Rego side spells the same keys in policies/lib.rego; a test of this
// package evaluates them with OPA and fails when the two disagree. Renaming a
// key is a breaking change for every user of nsprov: do not do it.
package contract
