# nsprov warnings: Messages returned to the client as admission warnings. They
# never deny.
package nsprov.validation

import data.nsprov.lib
import rego.v1

# METADATA
# title: tier cost on create
# description: The requester sees what the tier costs.
warn contains msg if {
	input.request.operation == "CREATE"
	lib.is_requested
	msg := sprintf("tier %s costs %s", [lib.tier, describe_tier(lib.tier)])
}

# METADATA
# title: tier cost on change
# description: A tier change shows the old and the new cost.
warn contains msg if {
	input.request.operation == "UPDATE"
	lib.is_requested
	old := lib.tier_of(lib.old_obj)
	old != lib.tier
	msg := sprintf("tier changes from %s to %s: from %s to %s", [old, lib.tier, describe_tier(old), describe_tier(lib.tier)])
}

# METADATA
# title: open network policy
# description: An open namespace outside development is allowed but flagged.
warn contains msg if {
	lib.network_policy in lib.environment_config.warn_network_policies
	lib.network_policy in lib.environment_config.allowed_network_policies
	lib.is_requested
	msg := sprintf("network policy %s in %s: %s; consider isolated or team", [lib.network_policy, lib.environment, data.config.network_policies.modes[lib.network_policy].description])
}

# METADATA
# title: unknown nsprov.io annotation
# description: A misspelt annotation is ignored, so say so.
warn contains msg if {
	some key in (object.keys(lib.annotations) - lib.known_annotation_keys)
	startswith(key, lib.prefix)
	msg := sprintf("annotation %s is not used by nsprov and is ignored; known annotations: %s", [key, concat(", ", sort(lib.known_annotation_keys))])
}

describe_tier(tier) := sprintf("$%d per month (%s CPU, %s memory, %s storage)", [t.monthly_cost_usd, t.quota.cpu, t.quota.memory, t.quota.storage]) if {
	t := data.config.tiers[tier]
}
