# nsprov access rules: Who may request for a team, what may change after
# creation, and which metadata only nsprov may write.
package nsprov.validation

import data.nsprov.lib
import rego.v1

# METADATA
# title: requester-not-in-team
# description: >-
#   The requester is in the team's group, or an admin. Checked on CREATE and on
#   an UPDATE that changes a request annotation.
deny contains violation if {
	team := lib.team
	lib.valid_team(team)
	group := lib.team_group(team)
	not group in lib.groups
	lib.is_requested
	request_changed
	not lib.is_admin
	not lib.is_manager
	violation := {
		"rule": "requester-not-in-team",
		"message": sprintf("user %q is not in group %q and may not request namespaces for team %q; ask a member of the team or a platform admin", [lib.username, group, team]),
	}
}

request_changed if lib.operation == "CREATE"

request_changed if {
	lib.operation == "UPDATE"
	some key in lib.request_keys
	object.get(lib.annotations, key, null) != object.get(lib.old_annotations, key, null)
}

# METADATA
# title: team-immutable
# description: The team of a namespace does not change after creation (admins excepted).
deny contains violation if {
	input.request.operation == "UPDATE"
	not lib.is_admin
	old := lib.old_annotations[lib.team_key]
	new := lib.team
	old != new
	not too_long[lib.team_key] # annotation-too-long says it, without the value
	violation := {
		"rule": "team-immutable",
		"message": sprintf("team cannot change from %q to %q; request a new namespace for the new team, or ask a platform admin", [old, new]),
	}
}

# METADATA
# title: environment-immutable
# description: The environment of a namespace does not change after creation (admins excepted).
deny contains violation if {
	input.request.operation == "UPDATE"
	not lib.is_admin
	old := lib.old_annotations[lib.environment_key]
	new := lib.environment
	old != new
	not too_long[lib.environment_key] # annotation-too-long says it, without the value
	violation := {
		"rule": "environment-immutable",
		"message": sprintf("environment cannot change from %q to %q; request a new namespace in %s instead", [old, new, new]),
	}
}

# METADATA
# title: request-annotations-removed
# description: An UPDATE keeps the team and environment of a requested namespace (admins excepted).
deny contains violation if {
	input.request.operation == "UPDATE"
	lib.was_requested
	not lib.is_admin
	removed := [key |
		some key in [lib.team_key, lib.environment_key]
		_ = lib.old_annotations[key]
		not lib.annotations[key]
	]
	count(removed) > 0
	violation := {
		"rule": "request-annotations-removed",
		"message": sprintf("annotations %s of a requested namespace cannot be removed; put them back, or ask a platform admin to release the namespace", [concat(", ", removed)]),
	}
}

# METADATA
# title: managed-metadata-forged
# description: >-
#   Only nsprov writes nsprov.io/ labels, nsprov.io/requested-by and
#   nsprov.io/workflow. A value is accepted when nsprov derives it from the
#   request (the mirrored labels and the requester) or when it is unchanged.
deny contains violation if {
	some key, value in unverified_labels
	startswith(key, lib.prefix)
	not derived_label(key, value)
	object.get(lib.old_labels, key, null) != value
	not lib.is_manager
	violation := {
		"rule": "managed-metadata-forged",
		"message": sprintf("label %s=%q is written by nsprov and cannot be set by %q; remove it (nsprov mirrors %s from the annotations)", [key, value, lib.username, concat(", ", sort(lib.mirrored_label_keys))]),
	}
}

deny contains violation if {
	key := "nsprov.io/requested-by"
	value := lib.annotations[key]
	not derived_annotation(key, value)
	object.get(lib.old_annotations, key, null) != value
	not lib.is_manager
	violation := {
		"rule": "managed-metadata-forged",
		"message": sprintf("annotation %s=%q is written by nsprov and cannot be set by %q; remove it", [key, value, lib.username]),
	}
}

# METADATA
# title: managed-metadata-forged (workflow)
# description: >-
#   Only nsprov writes nsprov.io/workflow; it never derives it from the
#   request, so any new or changed value is forged.
deny contains violation if {
	# Read from input directly, so that the rule index skips the rule when the
	# annotation is absent.
	value := input.request.object.metadata.annotations["nsprov.io/workflow"]
	key := lib.workflow_key
	object.get(lib.old_annotations, key, null) != value
	not lib.is_manager
	violation := {
		"rule": "managed-metadata-forged",
		"message": sprintf("annotation %s=%q is written by nsprov and cannot be set by %q; remove it", [key, value, lib.username]),
	}
}

# The labels the label rule above must check: all of them, or, when every
# mirrored label holds the value of its annotation (so nsprov derived it),
# only the others.
unverified_labels := object.remove(lib.labels, lib.mirrored_label_keys) if {
	lib.is_requested
	object.subset(lib.annotations, object.filter(lib.labels, lib.mirrored_label_keys))
} else := lib.labels

derived_label(key, value) if {
	lib.is_requested
	key in lib.mirrored_label_keys
	value == lib.annotations[key]
}

derived_label(key, value) if {
	lib.is_requested
	key == lib.tier_key
	value == lib.tier
}

derived_annotation(key, value) if {
	lib.is_requested
	key == "nsprov.io/requested-by"
	value == expected_requester
}

# The requester of the request that first asked for the namespace: kept from
# the old object, else the authenticated user.
expected_requester := object.get(lib.old_annotations, lib.requested_by_key, lib.username)
