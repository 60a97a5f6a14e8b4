# METADATA
# title: nsprov provisioning plan
# description: >-
#   The concrete values the provisioning workflow applies to a requested
#   namespace: quota, container defaults, role bindings, network policy and
#   features. Defined only for a namespace that passes validation.
package nsprov.plan

import data.nsprov.lib
import data.nsprov.validation
import rego.v1

# METADATA
# title: Provisioning plan
# description: The input to the nsprov-provision WorkflowTemplate.
plan := {
	"namespace": lib.name,
	"team": lib.team,
	"environment": lib.environment,
	"tier": lib.tier,
	"monthly_cost_usd": lib.tier_config.monthly_cost_usd,
	"quota": lib.tier_config.quota,
	"container_defaults": lib.tier_config.container_defaults,
	"container_default_requests": lib.tier_config.container_default_requests,
	"role_bindings": role_bindings,
	"network_policy": network_policy,
	"features": lib.features,
	"namespace_labels": namespace_labels,
} if {
	lib.is_requested
	count(validation.deny) == 0
}

role_bindings := [binding |
	some b in lib.access.team_role_bindings
	binding := {
		"name": b.name,
		"cluster_role": b.cluster_role,
		"group": replace(b.group, "{team}", lib.team),
	}
]

# Namespaces the requested features open traffic from and to. Only a mode
# with a default deny gets them: in a namespace without one, an allow policy
# would isolate its pods rather than open anything.
network_policy := object.union(data.config.network_policies.modes[lib.network_policy], {
	"mode": lib.network_policy,
	"allow_ingress_from": feature_namespaces("allow_ingress_from"),
	"allow_egress_to": feature_namespaces("allow_egress_to"),
})

feature_namespaces(direction) := sort({ns |
	some f in lib.features
	some ns in data.config.features[f][direction]
}) if {
	data.config.network_policies.modes[lib.network_policy].default_deny
} else := []

# The labels of every feature in the catalogue: the requested features' values,
# null for the others, so that a removed feature's label is removed.
namespace_labels := {k: v |
	some f, feature in data.config.features
	some k, value in feature.namespace_labels
	v := label_value(f, value)
}

label_value(f, value) := value if f in lib.features

label_value(f, _) := null if not f in lib.features
