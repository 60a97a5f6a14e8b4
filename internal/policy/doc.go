// Package policy loads, compiles and evaluates nsprov's Rego bundle.
//
// A Bundle is compiled once and prepares each of its queries for an
// Evaluator: by default package compiled runs the plan OPA's planner makes of
// the query; a bundle the planner cannot handle, or one told to, is evaluated
// by OPA's topdown instead, with the same results. The package builds the
// policy input from a Request, turns results into decisions (Mutation,
// Validation, plan) and caches them per bundle. A Store holds the active
// Bundle and, when it watches an override directory, swaps in a new one
// whenever the files change and still compile.
package policy
