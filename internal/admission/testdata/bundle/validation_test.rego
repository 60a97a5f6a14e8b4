package nsprov.validation_test

import data.nsprov.validation
import rego.v1

ns(name, annotations) := {"request": {
	"operation": "CREATE",
	"userInfo": {"username": "alice"},
	"object": {"metadata": {"name": name, "annotations": annotations}},
}}

rules := {v.rule | some v in validation.deny}

test_team_named_namespace_allowed if {
	rules == set() with input as ns("payments-dev", {"example.com/team": "payments"})
}

test_every_violation if {
	r := rules with input as ns("shop", {"example.com/team": "payments", "example.com/size": "huge", "example.com/owner": ""})
	r == {"name-prefix", "size-invalid", "value-empty"}
}

test_large_warned if {
	validation.warn == {"size large costs 4"} with input as ns("payments", {"example.com/team": "payments", "example.com/size": "large"})
}
