// Package app implements the nsprov command line: each command parses its
// flags into an options struct, validates it, and runs.
package app
