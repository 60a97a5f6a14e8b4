package nsprov.mutation_test

import data.nsprov.mutation
import rego.v1

create(annotations) := {"request": {
	"operation": "CREATE",
	"userInfo": {"username": "alice"},
	"object": {"metadata": {"name": "payments", "annotations": annotations}},
}}

test_defaults_and_mirror if {
	mutation.result == {
		"annotations": {"example.com/requested-by": "alice", "example.com/size": "small", "example.com/scratch": null},
		"labels": {"example.com/team": "payments"},
	} with input as create({"example.com/team": "payments"})
}

test_bare_namespace_untouched if {
	mutation.result == {"annotations": {}, "labels": {}} with input as create(null)
}
