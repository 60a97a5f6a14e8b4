# METADATA
# title: nsprov validation
# description: >-
#   deny and warn of a Namespace request, across request.rego, naming.rego,
#   access.rego and warnings.rego. The request annotations must be present and hold values from the
#   catalogues in data.config. Each rule adds a {"rule", "message"} violation to
#   deny; every violated rule is reported.
package nsprov.validation

import data.nsprov.lib
import rego.v1

environments := data.config.environments

tiers := data.config.tiers

modes := data.config.network_policies.modes

# Every deny rule runs on every request. Its conditions are ordered so that
# the one an allowed request fails comes first and the ones every requested
# namespace passes (lib.is_requested) come last; rules that only apply to an
# UPDATE test input.request.operation directly, which the rule index uses to
# skip them on CREATE. The order does not change what a rule decides.

# When the rules apply. The catalogue, naming and limit rules (this file,
# naming.rego, limits.rego) check what a requester asks for, against data an
# admin may change at any time. They apply when the request is made or
# changed (request_checked), never to an UPDATE that leaves the request
# annotations as they were: a policy edit that a namespace no longer meets
# must not freeze it (its labels, its finalizers, its deletion); the namespace
# audit reports it instead. The security rules (access.rego, metadata.rego:
# who may write what) apply to every request.

# request_checked holds on CREATE, on an UPDATE that changes a request
# annotation, and on an UPDATE that changes nothing at all (object equal to
# oldObject): that is how nsprov's namespace audit and its controller
# re-evaluate a stored namespace against the current policy.
request_checked if input.request.operation == "CREATE"

request_checked if {
	input.request.operation == "UPDATE"
	some key in lib.request_keys
	object.get(lib.annotations, key, null) != object.get(lib.old_annotations, key, null)
}

request_checked if {
	input.request.operation == "UPDATE"
	input.request.object == input.request.oldObject
}

# METADATA
# title: request-required
# description: Users outside the admin and exempt groups must request a namespace with annotations.
deny contains violation if {
	not lib.is_requested
	lib.operation == "CREATE"
	not lib.is_admin
	not lib.is_exempt
	not lib.is_manager
	violation := {
		"rule": "request-required",
		"message": sprintf("namespace %q has no request annotations; add at least %s and %s (see the nsprov README)", [lib.name, lib.team_key, lib.environment_key]),
	}
}

# METADATA
# title: team-required
# description: A requested namespace names its team.
deny contains violation if {
	not lib.team
	lib.is_requested
	request_checked
	violation := {
		"rule": "team-required",
		"message": sprintf("annotation %s is missing; set it to your team's name, for example %s=payments", [lib.team_key, lib.team_key]),
	}
}

# METADATA
# title: team-invalid
# description: The team is a DNS label of at most 40 characters.
deny contains violation if {
	team := lib.team
	not lib.valid_team(team)
	not too_long[lib.team_key]
	lib.is_requested
	request_checked
	violation := {
		"rule": "team-invalid",
		"message": sprintf("team %q is not valid; use at most 40 lower-case letters, digits and '-', starting and ending with a letter or digit", [team]),
	}
}

# METADATA
# title: environment-required
# description: A requested namespace names its environment.
deny contains violation if {
	not lib.environment
	lib.is_requested
	request_checked
	violation := {
		"rule": "environment-required",
		"message": sprintf("annotation %s is missing; set it to one of %s", [lib.environment_key, one_of(environments)]),
	}
}

# METADATA
# title: environment-invalid
# description: The environment is one of the catalogue's environments.
deny contains violation if {
	env := lib.environment
	not data.config.environments[env]
	not too_long[lib.environment_key]
	lib.is_requested
	request_checked
	violation := {
		"rule": "environment-invalid",
		"message": sprintf("environment %q is not known; use one of %s", [env, one_of(environments)]),
	}
}

# METADATA
# title: tier-invalid
# description: The tier is one of the catalogue's tiers.
deny contains violation if {
	tier := lib.annotations["nsprov.io/tier"]
	not data.config.tiers[tier]
	not too_long[lib.tier_key]
	lib.is_requested
	request_checked
	violation := {
		"rule": "tier-invalid",
		"message": sprintf("tier %q is not in the catalogue; use one of %s", [tier, one_of(tiers)]),
	}
}

# METADATA
# title: tier-not-allowed-in-environment
# description: Each environment allows a subset of the tiers.
deny contains violation if {
	allowed := lib.environment_config.allowed_tiers
	not lib.tier in allowed
	data.config.tiers[lib.tier]
	lib.is_requested
	request_checked
	violation := {
		"rule": "tier-not-allowed-in-environment",
		"message": sprintf("tier %q is not allowed in %s; use one of %s", [lib.tier, lib.environment, concat(", ", allowed)]),
	}
}

# METADATA
# title: network-policy-invalid
# description: The network policy mode is one of the catalogue's modes.
deny contains violation if {
	mode := lib.annotations["nsprov.io/network-policy"]
	not data.config.network_policies.modes[mode]
	not too_long[lib.network_policy_key]
	lib.is_requested
	request_checked
	violation := {
		"rule": "network-policy-invalid",
		"message": sprintf("network policy %q is not known; use one of %s", [mode, one_of(modes)]),
	}
}

# METADATA
# title: network-policy-not-allowed-in-environment
# description: Each environment allows a subset of the network policy modes (no open in production).
deny contains violation if {
	allowed := lib.environment_config.allowed_network_policies
	not lib.network_policy in allowed
	data.config.network_policies.modes[lib.network_policy]
	lib.is_requested
	request_checked
	violation := {
		"rule": "network-policy-not-allowed-in-environment",
		"message": sprintf("network policy %q is not allowed in %s; use one of %s", [lib.network_policy, lib.environment, concat(", ", allowed)]),
	}
}

# METADATA
# title: feature-invalid
# description: >-
#   Every requested feature is in the catalogue. Not checked when the list is
#   over a limit (annotation-too-long, too-many-features says so instead).
deny contains violation if {
	features_within_limits
	some feature in lib.features
	not data.config.features[feature]
	lib.is_requested
	request_checked
	violation := {
		"rule": "feature-invalid",
		"message": sprintf("feature %q is not known; use a comma-separated list from %s", [feature, one_of(data.config.features)]),
	}
}

# one_of(catalogue) lists a catalogue's keys for a message.
one_of(catalogue) := concat(", ", sort(object.keys(catalogue)))
