# nsprov limits: Bounds on the size of a request (data.config.limits), so
# that no request, however large, costs more than a small amount to decide.
# A value over a limit gets one violation that says the limit; the rules that
# look at the value (team-invalid, feature-invalid, ...) leave it alone, so a
# 256 KiB nsprov.io/features value costs one violation, not one per entry.
# Like the catalogue rules, the limits apply when a request is made or
# changed (request_checked), so lowering one freezes no namespace.
package nsprov.validation

import data.nsprov.lib
import rego.v1

limits := data.config.limits

# too_long[key] is the length, in characters, of each request annotation
# whose value is longer than its limit (limits.annotation_length).
too_long[key] := n if {
	some key, limit in limits.annotation_length
	n := count(lib.annotations[key])
	n > limit
}

# features_within_limits holds when the features list is short enough to be
# looked at entry by entry.
features_within_limits if {
	not too_long[lib.features_key]
	count(lib.features) <= limits.max_features
}

# METADATA
# title: annotation-too-long
# description: >-
#   Each request annotation is at most limits.annotation_length characters
#   long. One violation per annotation over its limit; the value itself is
#   not repeated.
deny contains violation if {
	some key, n in too_long
	request_checked
	violation := {
		"rule": "annotation-too-long",
		"message": sprintf("annotation %s is %d characters long, over the limit of %d (policy data limits.annotation_length); shorten it%s", [key, n, limits.annotation_length[key], too_long_hint(key)]),
	}
}

# METADATA
# title: too-many-features
# description: A namespace requests at most limits.max_features features.
deny contains violation if {
	not too_long[lib.features_key]
	n := count(lib.features)
	n > limits.max_features
	request_checked
	violation := {
		"rule": "too-many-features",
		"message": sprintf("%d features requested, over the limit of %d (policy data limits.max_features); request at most %d, from %s", [n, limits.max_features, limits.max_features, one_of(data.config.features)]),
	}
}

# too_long_hint(key) says what the annotation should hold instead.
too_long_hint(key) := sprintf(" to a comma-separated list of at most %d features from %s", [limits.max_features, one_of(data.config.features)]) if {
	key == lib.features_key
} else := sprintf(" to one of %s", [one_of(data.config.environments)]) if {
	key == lib.environment_key
} else := sprintf(" to one of %s", [one_of(data.config.tiers)]) if {
	key == lib.tier_key
} else := sprintf(" to one of %s", [one_of(data.config.network_policies.modes)]) if {
	key == lib.network_policy_key
} else := " to your team's name (at most 40 characters)"
