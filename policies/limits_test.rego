package nsprov.limits_test

import data.nsprov.validation
import rego.v1

alice := {"username": "alice", "groups": ["system:authenticated", "team-payments"]}

root := {"username": "root", "groups": ["system:masters"]}

ns(name, annotations) := {"metadata": {"name": name, "annotations": annotations, "labels": {}}}

create(user, obj) := {"request": {"operation": "CREATE", "userInfo": user, "object": obj, "oldObject": null, "dryRun": false}}

update(user, old, new) := {"request": {"operation": "UPDATE", "userInfo": user, "object": new, "oldObject": old, "dryRun": false}}

payments(extra) := ns("payments-dev", object.union({"nsprov.io/team": "payments", "nsprov.io/environment": "development"}, extra))

rules := {v.rule | some v in validation.deny}

messages := [v.message | some v in validation.deny]

# long(n) is a string of n characters.
long(n) := concat("", [c | some _ in numbers.range(1, n); c := "a"])

# many(n) is a features list of n distinct entries, none in the catalogue.
many(n) := concat(",", [sprintf("f%d", [i]) | some i in numbers.range(1, n)])

test_values_at_the_limit_allowed if {
	rules == set() with input as create(alice, payments({"nsprov.io/features": "istio"}))
		with data.config.limits.annotation_length["nsprov.io/features"] as 5
}

test_every_request_annotation_has_a_limit if {
	every key in data.nsprov.lib.request_keys {
		data.config.limits.annotation_length[key] > 0
	}
}

test_too_long_features_one_violation if {
	req := create(alice, payments({"nsprov.io/features": many(2000)}))
	rules == {"annotation-too-long"} with input as req
	count(messages) == 1 with input as req
}

test_too_long_message_says_the_limit_and_the_fix if {
	messages == [`annotation nsprov.io/features is 1035 characters long, over the limit of 1024 (policy data limits.annotation_length); shorten it to a comma-separated list of at most 32 features from istio, monitoring-enhanced`] with input as create(alice, payments({"nsprov.io/features": long(1035)}))
}

test_too_long_values_not_repeated_by_other_rules if {
	v := long(100)
	req := create(alice, ns("payments-dev", {"nsprov.io/team": v, "nsprov.io/environment": v, "nsprov.io/tier": v, "nsprov.io/network-policy": v}))
	rules == {"annotation-too-long"} with input as req
	count(messages) == 4 with input as req
	msgs := messages with input as req
	every m in msgs {
		not contains(m, v)
	}
}

test_too_long_team_message if {
	messages == [`annotation nsprov.io/team is 64 characters long, over the limit of 63 (policy data limits.annotation_length); shorten it to your team's name (at most 40 characters)`] with input as create(alice, payments({"nsprov.io/team": long(64)}))
}

test_too_long_applies_to_admins if {
	rules == {"annotation-too-long"} with input as create(root, payments({"nsprov.io/tier": long(64)}))
}

test_too_long_team_change_not_repeated_by_team_immutable if {
	rules == {"annotation-too-long"} with input as update(alice, payments({}), payments({"nsprov.io/team": long(64)}))
}

test_too_many_features_one_violation if {
	req := create(alice, payments({"nsprov.io/features": many(40)}))
	rules == {"too-many-features"} with input as req
	messages == [`40 features requested, over the limit of 32 (policy data limits.max_features); request at most 32, from istio, monitoring-enhanced`] with input as req
}

test_max_features_counts_distinct_features if {
	rules == set() with input as create(alice, payments({"nsprov.io/features": "istio,istio, ISTIO"}))
		with data.config.limits.max_features as 1
}

test_limits_are_policy_data if {
	rules == {"too-many-features"} with input as create(alice, payments({"nsprov.io/features": "istio,monitoring-enhanced"}))
		with data.config.limits.max_features as 1
	rules == {"annotation-too-long"} with input as create(alice, payments({"nsprov.io/tier": "medium"}))
		with data.config.limits.annotation_length["nsprov.io/tier"] as 3
}

# A lowered limit freezes no namespace: an UPDATE that keeps the request
# annotations is not checked; one that changes them is.
test_lowered_limit_freezes_no_namespace if {
	old := payments({"nsprov.io/features": "istio,monitoring-enhanced"})
	new := json.patch(old, [{"op": "add", "path": "/metadata/labels/example.com~1a", "value": "1"}])
	rules == set() with input as update(root, old, new)
		with data.config.limits.max_features as 1
	rules == {"too-many-features"} with input as update(alice, old, json.patch(old, [{"op": "add", "path": "/metadata/annotations/nsprov.io~1tier", "value": "micro"}]))
		with data.config.limits.max_features as 1
}
