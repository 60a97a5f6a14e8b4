// Package policy loads, compiles and evaluates nsprov's Rego bundle.
//
// A Bundle is compiled once: OPA's planner turns each of its queries into
// OPA's intermediate representation, which a program (compiled.go) runs per
// request; a bundle the planner cannot handle, or one told to, is evaluated
// by OPA's topdown instead, with the same results. A Store holds the active
// Bundle and, when it watches an override directory, swaps in a new one
// whenever the files change and still compile.
package policy
