# METADATA
# title: tiny test bundle, shared values
# description: >-
#   The bundle of the admission handler tests: a few rules about example.com/
#   annotations, laid out like policies/, so that the handler tests do not
#   depend on the rules of the real policy.
package nsprov.lib

import rego.v1

annotations := a if {
	a := input.request.object.metadata.annotations
	is_object(a)
} else := {}

team := annotations["example.com/team"]

size := annotations["example.com/size"] if {
	annotations["example.com/size"]
} else := "small"

# A namespace annotated example.com/fail makes the mutation and deny fail.
failing if annotations["example.com/fail"]
