# nsprov metadata rules: Which labels and annotations outside nsprov.io/ a
# requester may write on a namespace (data.config.metadata).
package nsprov.validation

import data.nsprov.lib
import rego.v1

# METADATA
# title: metadata-not-allowed
# description: >-
#   A requester adds, changes or removes a label or annotation outside
#   nsprov.io/ only when metadata.allowed_keys or allowed_prefixes cover it
#   and neither metadata.denied_keys, denied_prefixes nor a feature's
#   namespace_labels name it. Keys that do not change are not checked, and
#   admins, nsprov's identities and exempt identities may write any key.
#   One violation per key.
deny contains violation if {
	change := metadata_changes[kind][key]
	not metadata_allowed(key)
	violation := {
		"rule": "metadata-not-allowed",
		"message": metadata_message(kind, key, change),
	}
}

# metadata_changes holds, by kind ("label" or "annotation") and key, every
# requester-written key outside nsprov.io/ that the request adds, changes or
# removes: {"old": value or null, "new": value or null}.
metadata_changes[kind][key] := change if {
	not lib.is_admin
	not lib.is_manager
	not lib.is_exempt
	some kind, pair in {"label": [lib.labels, lib.old_labels], "annotation": [lib.annotations, lib.old_annotations]}
	[new, old] := pair
	some key in object.keys(new) | object.keys(old)
	not startswith(key, lib.prefix)
	not key in data.config.metadata.system_keys
	change := {"old": object.get(old, key, null), "new": object.get(new, key, null)}
	change.old != change.new
}

metadata_allowed(key) if {
	allowlisted(key)
	not denylisted(key)
}

allowlisted(key) if key in data.config.metadata.allowed_keys

allowlisted(key) if strings.any_prefix_match(key, data.config.metadata.allowed_prefixes)

denylisted(key) if key in data.config.metadata.denied_keys

denylisted(key) if strings.any_prefix_match(key, data.config.metadata.denied_prefixes)

denylisted(key) if {
	some feature in data.config.features
	_ = feature.namespace_labels[key]
}

metadata_message(kind, key, change) := sprintf("%s %s=%q cannot be set by %q: %s; remove it, or ask a platform admin", [kind, key, change.new, lib.username, metadata_reason(key)]) if {
	change.new != null
} else := sprintf("%s %s cannot be removed by %q: %s; put it back (%q), or ask a platform admin", [kind, key, lib.username, metadata_reason(key), change.old])

metadata_reason(key) := "only admins and nsprov write it (policy data metadata.denied_keys, metadata.denied_prefixes, features)" if {
	denylisted(key)
} else := "requesters may write only the keys the policy data allows (metadata.allowed_keys, metadata.allowed_prefixes)"
