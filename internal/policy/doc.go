// Package policy loads, compiles and evaluates nsprov's Rego bundle.
//
// A Bundle is compiled once; its queries are prepared at load time and only
// evaluated per request. A Store holds the active Bundle and, when it watches
// an override directory, swaps in a new one whenever the files change and
// still compile.
package policy
