package nsprov.request_test

import data.nsprov.validation
import rego.v1

alice := {"username": "alice", "groups": ["system:authenticated", "team-payments"]}

bob := {"username": "bob", "groups": ["system:authenticated", "team-billing"]}

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

# payments(env, extra) is a CREATE by alice of a payments namespace in env
# with the request annotations in extra added.
payments(env, extra) := create(alice, ns(
	concat("", ["payments", suffix[env]]),
	object.union({"nsprov.io/team": "payments", "nsprov.io/environment": env}, extra),
))

rules := {v.rule | some v in validation.deny}

messages := {v.message | some v in validation.deny}

test_valid_request_allowed_in_every_environment if {
	every env in ["development", "staging", "production"] {
		rules == set() with input as payments(env, {})
	}
}

test_valid_request_with_every_option_allowed if {
	rules == set() with input as payments("production", {
		"nsprov.io/tier": "large",
		"nsprov.io/network-policy": "team",
		"nsprov.io/features": "istio,monitoring-enhanced",
	})
}

# request-required

test_request_required_denied_for_bare_namespace if {
	rules == {"request-required"} with input as create(alice, ns("scratch", {}))
}

test_request_required_message if {
	messages == {`namespace "scratch" has no request annotations; add at least nsprov.io/team and nsprov.io/environment (see the nsprov README)`} with input as create(alice, ns("scratch", {}))
}

test_request_required_denied_without_annotations_object if {
	rules == {"request-required"} with input as create(alice, {"metadata": {"name": "scratch"}})
}

test_request_required_ignores_non_request_annotations if {
	rules == {"request-required"} with input as create(alice, ns("scratch", {"nsprov.io/reprovision": "1", "example.com/team": "payments"}))
		with data.config.metadata.allowed_prefixes as ["example.com/"]
}

test_request_required_allowed_for_system_masters if {
	rules == set() with input as create({"username": "root", "groups": ["system:masters"]}, ns("scratch", {}))
}

test_request_required_allowed_for_platform_admins if {
	rules == set() with input as create({"username": "pat", "groups": ["system:authenticated", "platform-admins"]}, ns("scratch", {}))
}

test_request_required_allowed_for_exempt_group if {
	user := {"username": "system:serviceaccount:kube-system:namespace-controller", "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system"]}
	rules == set() with input as create(user, ns("scratch", {}))
}

test_request_required_allowed_for_manager if {
	user := {"username": "system:serviceaccount:nsprov-system:nsprov", "groups": ["system:serviceaccounts"]}
	rules == set() with input as create(user, ns("scratch", {}))
}

test_request_required_denied_for_other_service_account if {
	user := {"username": "system:serviceaccount:default:app", "groups": ["system:serviceaccounts", "system:serviceaccounts:default"]}
	rules == {"request-required"} with input as create(user, ns("scratch", {}))
}

test_request_required_not_on_update if {
	rules == set() with input as update(alice, ns("scratch", {}), ns("scratch", {"example.com/owner": "alice"}))
		with data.config.metadata.allowed_prefixes as ["example.com/"]
}

test_request_required_not_for_requested_namespace if {
	r := rules with input as create(alice, ns("scratch", {"nsprov.io/tier": "small"}))
	not "request-required" in r
	"team-required" in r
	"environment-required" in r
}

# team-required

test_team_required_denied if {
	rules == {"team-required"} with input as create(alice, ns("payments-dev", {"nsprov.io/environment": "development"}))
}

test_team_required_message if {
	messages == {"annotation nsprov.io/team is missing; set it to your team's name, for example nsprov.io/team=payments"} with input as create(alice, ns("payments-dev", {"nsprov.io/environment": "development"}))
}

test_team_required_allowed_with_team if {
	not "team-required" in rules with input as payments("development", {})
	rules == set() with input as payments("development", {})
}

test_team_required_empty_team_is_invalid_not_missing if {
	r := rules with input as payments("development", {"nsprov.io/team": ""})
	not "team-required" in r
	"team-invalid" in r
}

# team-invalid

test_team_invalid_upper_case if {
	rules == {"team-invalid"} with input as payments("development", {"nsprov.io/team": "Payments"})
}

test_team_invalid_message if {
	messages == {`team "Pay_ments" is not valid; use at most 40 lower-case letters, digits and '-', starting and ending with a letter or digit`} with input as payments("development", {"nsprov.io/team": "Pay_ments"})
}

test_team_invalid_leading_or_trailing_dash if {
	"team-invalid" in rules with input as payments("development", {"nsprov.io/team": "-payments"})
	"team-invalid" in rules with input as payments("development", {"nsprov.io/team": "payments-"})
}

test_team_invalid_41_characters if {
	team := concat("", [c | some _ in numbers.range(1, 41); c := "a"])
	rules == {"team-invalid"} with input as payments("development", {"nsprov.io/team": team})
}

test_team_invalid_allowed_40_characters if {
	team := concat("", [c | some _ in numbers.range(1, 40); c := "a"])
	user := {"username": "alice", "groups": [concat("", ["team-", team])]}
	obj := ns("payments-dev", {"nsprov.io/team": team, "nsprov.io/environment": "development"})
	rules == set() with input as create(user, obj)
}

test_team_invalid_allowed_with_digits_and_dashes if {
	user := {"username": "alice", "groups": ["team-team-2b"]}
	obj := ns("payments-dev", {"nsprov.io/team": "team-2b", "nsprov.io/environment": "development"})
	rules == set() with input as create(user, obj)
}

# environment-required

test_environment_required_denied if {
	rules == {"environment-required"} with input as create(alice, ns("payments-dev", {"nsprov.io/team": "payments"}))
}

test_environment_required_message if {
	msgs := messages with input as create(alice, ns("payments-dev", {"nsprov.io/team": "payments"}))
	msgs == {"annotation nsprov.io/environment is missing; set it to one of development, production, staging"}
}

test_environment_required_allowed_with_environment if {
	not "environment-required" in rules with input as payments("staging", {})
}

# environment-invalid

test_environment_invalid_denied if {
	rules == {"environment-invalid"} with input as create(alice, ns("payments-dev", {"nsprov.io/team": "payments", "nsprov.io/environment": "dev"}))
}

test_environment_invalid_is_case_sensitive if {
	rules == {"environment-invalid"} with input as create(alice, ns("payments-prod", {"nsprov.io/team": "payments", "nsprov.io/environment": "Production"}))
}

test_environment_invalid_message if {
	msgs := messages with input as create(alice, ns("payments-dev", {"nsprov.io/team": "payments", "nsprov.io/environment": "qa"}))
	msgs == {`environment "qa" is not known; use one of development, production, staging`}
}

test_environment_invalid_allowed_for_catalogue if {
	every env in ["development", "staging", "production"] {
		not "environment-invalid" in rules with input as payments(env, {})
	}
}

# tier-invalid

test_tier_invalid_denied if {
	rules == {"tier-invalid"} with input as payments("staging", {"nsprov.io/tier": "huge"})
}

test_tier_invalid_message if {
	messages == {`tier "huge" is not in the catalogue; use one of large, medium, micro, small`} with input as payments("staging", {"nsprov.io/tier": "huge"})
}

test_tier_invalid_allowed_for_catalogue if {
	rules == set() with input as payments("staging", {"nsprov.io/tier": "large"})
	rules == set() with input as payments("development", {"nsprov.io/tier": "micro"})
}

# tier-not-allowed-in-environment

test_tier_not_allowed_large_in_development if {
	rules == {"tier-not-allowed-in-environment"} with input as payments("development", {"nsprov.io/tier": "large"})
}

test_tier_not_allowed_micro_in_production if {
	rules == {"tier-not-allowed-in-environment"} with input as payments("production", {"nsprov.io/tier": "micro"})
}

test_tier_not_allowed_micro_in_staging if {
	rules == {"tier-not-allowed-in-environment"} with input as payments("staging", {"nsprov.io/tier": "micro"})
}

test_tier_not_allowed_message if {
	messages == {`tier "large" is not allowed in development; use one of micro, small, medium`} with input as payments("development", {"nsprov.io/tier": "large"})
}

test_tier_not_allowed_allowed_in_environment if {
	not "tier-not-allowed-in-environment" in rules with input as payments("development", {"nsprov.io/tier": "medium"})
	not "tier-not-allowed-in-environment" in rules with input as payments("production", {"nsprov.io/tier": "large"})
}

test_tier_not_allowed_not_for_default_tiers if {
	every env in ["development", "staging", "production"] {
		not "tier-not-allowed-in-environment" in rules with input as payments(env, {})
	}
}

test_tier_not_allowed_not_reported_for_unknown_tier if {
	r := rules with input as payments("production", {"nsprov.io/tier": "huge"})
	r == {"tier-invalid"}
}

# network-policy-invalid

test_network_policy_invalid_denied if {
	rules == {"network-policy-invalid"} with input as payments("development", {"nsprov.io/network-policy": "closed"})
}

test_network_policy_invalid_message if {
	messages == {`network policy "closed" is not known; use one of isolated, open, team`} with input as payments("development", {"nsprov.io/network-policy": "closed"})
}

test_network_policy_invalid_allowed_for_catalogue if {
	every mode in ["isolated", "team", "open"] {
		not "network-policy-invalid" in rules with input as payments("development", {"nsprov.io/network-policy": mode})
	}
}

# network-policy-not-allowed-in-environment

test_network_policy_not_allowed_open_in_production if {
	rules == {"network-policy-not-allowed-in-environment"} with input as payments("production", {"nsprov.io/network-policy": "open"})
}

test_network_policy_not_allowed_message if {
	messages == {`network policy "open" is not allowed in production; use one of isolated, team`} with input as payments("production", {"nsprov.io/network-policy": "open"})
}

test_network_policy_not_allowed_allowed_elsewhere if {
	rules == set() with input as payments("staging", {"nsprov.io/network-policy": "open"})
	rules == set() with input as payments("development", {"nsprov.io/network-policy": "open"})
	rules == set() with input as payments("production", {"nsprov.io/network-policy": "team"})
	rules == set() with input as payments("production", {"nsprov.io/network-policy": "isolated"})
}

test_network_policy_not_allowed_not_reported_for_unknown_mode if {
	rules == {"network-policy-invalid"} with input as payments("production", {"nsprov.io/network-policy": "closed"})
}

# feature-invalid

test_feature_invalid_denied if {
	rules == {"feature-invalid"} with input as payments("development", {"nsprov.io/features": "istio,tracing"})
}

test_feature_invalid_message if {
	messages == {`feature "tracing" is not known; use a comma-separated list from istio, monitoring-enhanced`} with input as payments("development", {"nsprov.io/features": "istio, Tracing"})
}

test_feature_invalid_one_violation_per_unknown_feature if {
	violations := validation.deny with input as payments("development", {"nsprov.io/features": "tracing,logging,istio"})
	count(violations) == 2
	{v.rule | some v in violations} == {"feature-invalid"}
}

test_feature_invalid_allowed_after_normalisation if {
	rules == set() with input as payments("development", {"nsprov.io/features": " Istio , MONITORING-ENHANCED,istio,"})
}

test_feature_invalid_allowed_for_empty_list if {
	rules == set() with input as payments("development", {"nsprov.io/features": ""})
}

# Every violation is reported at once.

test_several_violations_reported_together if {
	obj := ns("kube-payments", {
		"nsprov.io/team": "Bad_Team",
		"nsprov.io/environment": "qa",
		"nsprov.io/tier": "huge",
		"nsprov.io/network-policy": "closed",
		"nsprov.io/features": "tracing",
	})
	r := rules with input as create(bob, obj)
	count(r) == 6
	r == {"team-invalid", "environment-invalid", "tier-invalid", "network-policy-invalid", "feature-invalid", "name-reserved"}
}

test_several_violations_missing_annotations_and_name if {
	r := rules with input as create(bob, ns("payments", {"nsprov.io/tier": "large", "nsprov.io/network-policy": "open"}))
	r == {"team-required", "environment-required"}
}

test_several_violations_in_production if {
	obj := ns("payments", {
		"nsprov.io/team": "payments",
		"nsprov.io/environment": "production",
		"nsprov.io/tier": "micro",
		"nsprov.io/network-policy": "open",
	})
	r := rules with input as create(bob, obj)
	count(r) == 4
	r == {"tier-not-allowed-in-environment", "network-policy-not-allowed-in-environment", "name-environment-suffix", "requester-not-in-team"}
}

test_violations_have_rule_and_message if {
	violations := validation.deny with input as payments("production", {"nsprov.io/tier": "micro", "nsprov.io/network-policy": "open"})
	count(violations) == 2
	every v in violations {
		object.keys(v) == {"rule", "message"}
		v.message != ""
	}
}

# When the rules apply: a policy edit freezes no namespace.

tightened := {"development": object.union(data.config.environments.development, {"allowed_tiers": ["small", "medium"]})}

stored := ns("payments-dev", {"nsprov.io/team": "payments", "nsprov.io/environment": "development", "nsprov.io/tier": "micro"})

labelled := json.patch(stored, [{"op": "add", "path": "/metadata/labels/example.com~1owner", "value": "ops"}])

finalized := json.patch(stored, [{"op": "add", "path": "/metadata/finalizers", "value": ["foregroundDeletion"]}])

root := {"username": "root", "groups": ["system:masters"]}

kube_system := {"username": "system:serviceaccount:kube-system:generic-garbage-collector", "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system"]}

test_catalogue_rule_on_create if {
	rules == {"tier-not-allowed-in-environment"} with input as create(alice, stored)
		with data.config.environments as tightened
}

test_catalogue_rule_not_on_update_keeping_the_request if {
	rules == set() with input as update(root, stored, labelled) with data.config.environments as tightened
	rules == set() with input as update(kube_system, stored, finalized) with data.config.environments as tightened
	rules == set() with input as update(alice, stored, json.patch(stored, [{"op": "add", "path": "/metadata/annotations/nsprov.io~1reprovision", "value": "2"}]))
		with data.config.environments as tightened
}

test_catalogue_rule_on_update_changing_the_request if {
	rules == {"tier-not-allowed-in-environment"} with input as update(alice, stored, json.patch(stored, [{"op": "add", "path": "/metadata/annotations/nsprov.io~1network-policy", "value": "team"}]))
		with data.config.environments as tightened
	rules == set() with input as update(alice, stored, json.patch(stored, [{"op": "replace", "path": "/metadata/annotations/nsprov.io~1tier", "value": "small"}]))
		with data.config.environments as tightened
}

# The namespace audit and the controller evaluate a stored namespace as an
# UPDATE that changes nothing; they still see the violation.
test_catalogue_rule_on_reevaluation_of_a_stored_namespace if {
	controller := {"username": "system:serviceaccount:nsprov-system:nsprov", "groups": ["system:serviceaccounts", "system:serviceaccounts:nsprov-system", "system:authenticated"]}
	rules == {"tier-not-allowed-in-environment"} with input as update(controller, stored, stored)
		with data.config.environments as tightened
}

test_every_catalogue_rule_not_on_update_keeping_the_request if {
	bad := ns("x", {"nsprov.io/team": "Bad_Team", "nsprov.io/environment": "nowhere", "nsprov.io/tier": "huge", "nsprov.io/network-policy": "wide", "nsprov.io/features": "nope"})
	count(rules) >= 5 with input as create(root, bad)
	rules == set() with input as update(root, bad, json.patch(bad, [{"op": "add", "path": "/metadata/labels/example.com~1owner", "value": "ops"}]))
}

test_security_rules_on_every_update if {
	rules == {"metadata-not-allowed"} with input as update(alice, stored, labelled)
		with data.config.environments as tightened
	rules == {"managed-metadata-forged"} with input as update(alice, stored, json.patch(stored, [{"op": "add", "path": "/metadata/annotations/nsprov.io~1workflow", "value": "argo/forged"}]))
		with data.config.environments as tightened
}
