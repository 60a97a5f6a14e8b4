package nsprov.warnings_test

import data.nsprov.validation
import rego.v1

alice := {"username": "alice", "groups": ["system:authenticated", "team-payments"]}

suffix := {"development": "-dev", "staging": "-staging", "production": "-prod"}

ns(name, annotations) := {"metadata": {"name": name, "annotations": annotations, "labels": {}}}

create(user, obj) := {"request": {
	"operation": "CREATE",
	"userInfo": user,
	"object": obj,
	"oldObject": null,
	"dryRun": false,
}}

update(user, old, new) := {"request": {
	"operation": "UPDATE",
	"userInfo": user,
	"object": new,
	"oldObject": old,
	"dryRun": false,
}}

# payments(env, extra) is a payments namespace in env with extra annotations.
payments(env, extra) := ns(
	concat("", ["payments", suffix[env]]),
	object.union({"nsprov.io/team": "payments", "nsprov.io/environment": env}, extra),
)

small := "tier small costs $100 per month (2 CPU, 4Gi memory, 20Gi storage)"

medium := "tier medium costs $200 per month (4 CPU, 8Gi memory, 50Gi storage)"

known := "nsprov.io/cancel, nsprov.io/environment, nsprov.io/features, nsprov.io/network-policy, nsprov.io/provisioned-plan, nsprov.io/provisioning, nsprov.io/reprovision, nsprov.io/requested-by, nsprov.io/team, nsprov.io/tier, nsprov.io/workflow"

open_warning(env) := sprintf("network policy open in %s: no default deny; all traffic allowed; consider isolated or team", [env])

# tier cost on CREATE

test_tier_cost_on_create_default_tier if {
	validation.warn == {small} with input as create(alice, payments("development", {}))
	validation.warn == {medium} with input as create(alice, payments("production", {}))
}

test_tier_cost_on_create_every_tier if {
	validation.warn == {"tier micro costs $50 per month (1 CPU, 2Gi memory, 10Gi storage)"} with input as create(alice, payments("development", {"nsprov.io/tier": "micro"}))
	validation.warn == {"tier large costs $400 per month (8 CPU, 16Gi memory, 100Gi storage)"} with input as create(alice, payments("staging", {"nsprov.io/tier": "large"}))
}

test_tier_cost_not_for_unknown_tier if {
	validation.warn == set() with input as create(alice, payments("development", {"nsprov.io/tier": "huge"}))
}

test_tier_cost_not_for_bare_namespace if {
	validation.warn == set() with input as create(alice, ns("scratch", {}))
}

test_tier_cost_not_on_unchanged_update if {
	obj := payments("staging", {"nsprov.io/tier": "large"})
	validation.warn == set() with input as update(alice, obj, obj)
}

# tier change on UPDATE

test_tier_change_on_update if {
	old := payments("staging", {"nsprov.io/tier": "medium"})
	new := payments("staging", {"nsprov.io/tier": "large"})
	validation.warn == {"tier changes from medium to large: from $200 per month (4 CPU, 8Gi memory, 50Gi storage) to $400 per month (8 CPU, 16Gi memory, 100Gi storage)"} with input as update(alice, old, new)
}

test_tier_change_from_default_on_update if {
	old := payments("development", {})
	new := payments("development", {"nsprov.io/tier": "micro"})
	validation.warn == {"tier changes from small to micro: from $100 per month (2 CPU, 4Gi memory, 20Gi storage) to $50 per month (1 CPU, 2Gi memory, 10Gi storage)"} with input as update(alice, old, new)
}

test_tier_change_not_when_default_made_explicit if {
	old := payments("development", {})
	new := payments("development", {"nsprov.io/tier": "small"})
	validation.warn == set() with input as update(alice, old, new)
}

test_tier_change_not_when_old_was_bare if {
	validation.warn == set() with input as update(alice, ns("payments-dev", {}), payments("development", {}))
}

# open network policy

test_open_network_policy_warned_in_staging if {
	validation.warn == {medium, open_warning("staging")} with input as create(alice, payments("staging", {"nsprov.io/network-policy": "open"}))
}

# In production open is denied, so the denial says it and no warning repeats it.
test_open_network_policy_denied_not_warned_in_production if {
	validation.warn == {medium} with input as create(alice, payments("production", {"nsprov.io/network-policy": "open"}))
	some v in validation.deny with input as create(alice, payments("production", {"nsprov.io/network-policy": "open"}))
	v.rule == "network-policy-not-allowed-in-environment"
}

# A mode an admin allows in production but still flags is warned there.
test_open_network_policy_warned_in_production_when_allowed if {
	open_warning("production") in validation.warn with input as create(alice, payments("production", {"nsprov.io/network-policy": "open"}))
		with data.config.environments.production.allowed_network_policies as ["isolated", "team", "open"]
}

test_open_network_policy_warned_on_update if {
	obj := payments("staging", {"nsprov.io/network-policy": "open"})
	validation.warn == {open_warning("staging")} with input as update(alice, obj, obj)
}

test_open_network_policy_not_warned_in_development if {
	validation.warn == {small} with input as create(alice, payments("development", {"nsprov.io/network-policy": "open"}))
}

test_other_network_policies_not_warned if {
	validation.warn == {medium} with input as create(alice, payments("staging", {"nsprov.io/network-policy": "team"}))
	validation.warn == {medium} with input as create(alice, payments("production", {"nsprov.io/network-policy": "isolated"}))
}

# unknown nsprov.io annotation

test_unknown_annotation_warned if {
	w := sprintf("annotation nsprov.io/teams is not used by nsprov and is ignored; known annotations: %s", [known])
	validation.warn == {small, w} with input as create(alice, payments("development", {"nsprov.io/teams": "payments"}))
}

test_unknown_annotation_warned_on_bare_namespace if {
	w := sprintf("annotation nsprov.io/tenant is not used by nsprov and is ignored; known annotations: %s", [known])
	validation.warn == {w} with input as create(alice, ns("scratch", {"nsprov.io/tenant": "x"}))
}

test_unknown_annotation_one_warning_each if {
	ws := validation.warn with input as create(alice, ns("scratch", {"nsprov.io/a": "1", "nsprov.io/b": "2"}))
	count(ws) == 2
}

test_known_annotations_not_warned if {
	obj := payments("development", {
		"nsprov.io/tier": "small",
		"nsprov.io/network-policy": "team",
		"nsprov.io/features": "istio",
		"nsprov.io/requested-by": "alice",
		"nsprov.io/workflow": "argo/wf",
		"nsprov.io/reprovision": "1",
	})
	validation.warn == set() with input as update(alice, obj, obj)
}

test_other_prefixes_not_warned if {
	validation.warn == set() with input as create(alice, ns("scratch", {"example.com/team": "x", "monitoring.nsprov.io/x": "y", "nsprov.io": "z"}))
}

# Warnings never deny.

test_warnings_do_not_deny if {
	inp := create(alice, payments("staging", {"nsprov.io/network-policy": "open", "nsprov.io/colour": "blue"}))
	count(validation.warn) == 3 with input as inp
	validation.deny == set() with input as inp
}
