package nsprov.access_test

import data.nsprov.validation
import rego.v1

alice := {"username": "alice", "groups": ["system:authenticated", "team-payments"]}

bob := {"username": "bob", "groups": ["system:authenticated", "team-billing"]}

carol := {"username": "carol", "groups": ["system:authenticated", "team-payments", "team-billing"]}

root := {"username": "root", "groups": ["system:masters"]}

pat := {"username": "pat", "groups": ["system:authenticated", "platform-admins"]}

controller := {"username": "system:serviceaccount:nsprov-system:nsprov", "groups": ["system:serviceaccounts"]}

provisioner := {"username": "system:serviceaccount:argo:nsprov-provisioner", "groups": ["system:serviceaccounts"]}

ns(name, annotations, labels) := {"metadata": {"name": name, "annotations": annotations, "labels": labels}}

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

base := {"nsprov.io/team": "payments", "nsprov.io/environment": "development"}

# payments(extra) is payments-dev as the mutating webhook leaves it after alice
# created it, with extra annotations added.
payments(extra) := ns("payments-dev", object.union(object.union(base, {"nsprov.io/requested-by": "alice"}), extra), {
	"nsprov.io/team": "payments",
	"nsprov.io/environment": "development",
	"nsprov.io/tier": "small",
})

# request(extra) is a fresh CREATE object: the request annotations and extra.
request(extra) := ns("payments-dev", object.union(base, extra), {})

rules := {v.rule | some v in validation.deny}

messages_of(rule) := {v.message | some v in validation.deny; v.rule == rule}

test_mutated_create_allowed if {
	rules == set() with input as create(alice, payments({}))
}

# requester-not-in-team

test_requester_not_in_team_denied_on_create if {
	rules == {"requester-not-in-team"} with input as create(bob, request({}))
}

test_requester_not_in_team_message if {
	msgs := messages_of("requester-not-in-team") with input as create(bob, request({}))
	msgs == {`user "bob" is not in group "team-payments" and may not request namespaces for team "payments"; ask a member of the team or a platform admin`}
}

test_requester_not_in_team_denied_without_groups if {
	rules == {"requester-not-in-team"} with input as create({"username": "eve", "groups": []}, request({}))
	rules == {"requester-not-in-team"} with input as create({"username": "eve"}, request({}))
}

test_requester_not_in_team_allowed_for_member if {
	rules == set() with input as create(alice, request({}))
	rules == set() with input as create(carol, request({}))
}

test_requester_not_in_team_allowed_for_system_masters if {
	rules == set() with input as create(root, request({}))
}

test_requester_not_in_team_allowed_for_platform_admins if {
	rules == set() with input as create(pat, request({}))
}

test_requester_not_in_team_allowed_for_manager if {
	rules == set() with input as create(controller, request({}))
}

test_requester_not_in_team_not_for_exempt_group if {
	user := {"username": "system:serviceaccount:kube-system:ctrl", "groups": ["system:serviceaccounts:kube-system"]}
	rules == {"requester-not-in-team"} with input as create(user, request({}))
}

test_requester_not_in_team_not_reported_for_invalid_team if {
	rules == {"team-invalid"} with input as create(bob, request({"nsprov.io/team": "Payments"}))
}

test_requester_not_in_team_update_without_request_change_allowed if {
	old := payments({})
	new := ns("payments-dev", old.metadata.annotations, object.union(old.metadata.labels, {"app.kubernetes.io/part-of": "payments"}))
	rules == set() with input as update(bob, old, new) with data.config.metadata.allowed_prefixes as ["app.kubernetes.io/"]
	rules == set() with input as update(bob, old, payments({"nsprov.io/reprovision": "2"}))
}

test_requester_not_in_team_update_changing_tier_denied if {
	rules == {"requester-not-in-team"} with input as update(bob, payments({}), payments({"nsprov.io/tier": "medium"}))
}

test_requester_not_in_team_update_adding_features_denied if {
	rules == {"requester-not-in-team"} with input as update(bob, payments({}), payments({"nsprov.io/features": "istio"}))
}

test_requester_not_in_team_update_changing_tier_by_member_allowed if {
	rules == set() with input as update(alice, payments({}), payments({"nsprov.io/tier": "medium"}))
}

# team-immutable

test_team_immutable_denied if {
	new := ns("payments-dev", object.union(payments({}).metadata.annotations, {"nsprov.io/team": "billing"}), {})
	rules == {"team-immutable"} with input as update(carol, payments({}), new)
}

# A member of the old team only who moves the namespace to another team
# breaks both rules, and both are reported.
test_team_immutable_and_requester_not_in_new_team_reported_together if {
	new := ns("payments-dev", object.union(payments({}).metadata.annotations, {"nsprov.io/team": "billing"}), {})
	rules == {"team-immutable", "requester-not-in-team"} with input as update(alice, payments({}), new)
}

test_team_immutable_message if {
	new := ns("payments-dev", object.union(payments({}).metadata.annotations, {"nsprov.io/team": "billing"}), {})
	msgs := messages_of("team-immutable") with input as update(carol, payments({}), new)
	msgs == {`team cannot change from "payments" to "billing"; request a new namespace for the new team, or ask a platform admin`}
}

test_team_immutable_allowed_unchanged if {
	r := rules with input as update(alice, payments({}), payments({"nsprov.io/tier": "micro"}))
	not "team-immutable" in r
	r == set()
}

test_team_immutable_allowed_for_admins if {
	new := ns("payments-dev", object.union(payments({}).metadata.annotations, {"nsprov.io/team": "billing"}), {})
	rules == set() with input as update(root, payments({}), new)
	rules == set() with input as update(pat, payments({}), new)
}

test_team_immutable_not_for_manager if {
	new := ns("payments-dev", object.union(payments({}).metadata.annotations, {"nsprov.io/team": "billing"}), {})
	rules == {"team-immutable"} with input as update(controller, payments({}), new)
}

test_team_immutable_allowed_when_team_first_set if {
	old := ns("payments-dev", {"nsprov.io/environment": "development"}, {})
	r := rules with input as update(alice, old, request({}))
	not "team-immutable" in r
	r == set()
}

# environment-immutable

test_environment_immutable_denied if {
	new := ns("payments-dev", object.union(payments({}).metadata.annotations, {"nsprov.io/environment": "staging"}), {})
	r := rules with input as update(alice, payments({}), new)
	"environment-immutable" in r
	r == {"environment-immutable", "name-environment-suffix"}
}

test_environment_immutable_message if {
	new := ns("payments-staging", object.union(payments({}).metadata.annotations, {"nsprov.io/environment": "staging"}), {})
	msgs := messages_of("environment-immutable") with input as update(alice, payments({}), new)
	msgs == {`environment cannot change from "development" to "staging"; request a new namespace in staging instead`}
}

test_environment_immutable_allowed_unchanged if {
	not "environment-immutable" in rules with input as update(alice, payments({}), payments({"nsprov.io/network-policy": "team"}))
	rules == set() with input as update(alice, payments({}), payments({"nsprov.io/network-policy": "team"}))
}

test_environment_immutable_allowed_for_admins if {
	old := ns("payments-x", payments({}).metadata.annotations, {})
	new := ns("payments-x", object.union(payments({}).metadata.annotations, {"nsprov.io/environment": "staging"}), {})
	r1 := rules with input as update(root, old, new)
	not "environment-immutable" in r1
	r2 := rules with input as update(pat, old, new)
	not "environment-immutable" in r2
	r2 == {"name-environment-suffix"}
}

# request-annotations-removed

test_request_annotations_removed_team if {
	new := ns("payments-dev", {"nsprov.io/environment": "development", "nsprov.io/requested-by": "alice"}, {})
	r := rules with input as update(alice, payments({}), new)
	r == {"request-annotations-removed", "team-required"}
	msgs := messages_of("request-annotations-removed") with input as update(alice, payments({}), new)
	msgs == {"annotations nsprov.io/team of a requested namespace cannot be removed; put them back, or ask a platform admin to release the namespace"}
}

test_request_annotations_removed_all if {
	new := ns("payments-dev", {"nsprov.io/requested-by": "alice"}, {})
	r := rules with input as update(alice, payments({}), new)
	r == {"request-annotations-removed"}
	msgs := messages_of("request-annotations-removed") with input as update(alice, payments({}), new)
	msgs == {"annotations nsprov.io/team, nsprov.io/environment of a requested namespace cannot be removed; put them back, or ask a platform admin to release the namespace"}
}

test_request_annotations_removed_environment_denied_for_non_member if {
	new := ns("payments-dev", {"nsprov.io/team": "payments", "nsprov.io/requested-by": "alice"}, {})
	"request-annotations-removed" in rules with input as update(bob, payments({}), new)
}

test_request_annotations_removed_allowed_for_optional_annotations if {
	old := payments({"nsprov.io/tier": "micro", "nsprov.io/features": "istio"})
	rules == set() with input as update(alice, old, payments({}))
}

test_request_annotations_removed_allowed_for_admins if {
	new := ns("payments-dev", {"nsprov.io/requested-by": "alice"}, {})
	rules == set() with input as update(root, payments({}), new)
	rules == set() with input as update(pat, payments({}), new)
}

test_request_annotations_removed_not_for_bare_namespace if {
	rules == set() with input as update(alice, ns("scratch", {"example.com/a": "1"}, {}), ns("scratch", {}, {}))
		with data.config.metadata.allowed_prefixes as ["example.com/"]
}

# managed-metadata-forged: labels

test_forged_label_other_team_denied_on_create if {
	obj := ns("payments-dev", base, {"nsprov.io/team": "billing"})
	rules == {"managed-metadata-forged"} with input as create(alice, obj)
}

test_forged_label_message if {
	obj := ns("payments-dev", base, {"nsprov.io/team": "billing"})
	msgs := messages_of("managed-metadata-forged") with input as create(alice, obj)
	msgs == {`label nsprov.io/team="billing" is written by nsprov and cannot be set by "alice"; remove it (nsprov mirrors nsprov.io/environment, nsprov.io/team, nsprov.io/tier from the annotations)`}
}

test_forged_label_unknown_key_denied_on_create if {
	rules == {"managed-metadata-forged"} with input as create(alice, ns("payments-dev", base, {"nsprov.io/owner": "alice"}))
}

test_forged_label_on_bare_namespace_denied if {
	rules == {"managed-metadata-forged"} with input as create(root, ns("scratch", {}, {"nsprov.io/team": "payments"}))
}

test_forged_label_tier_other_than_default_denied if {
	rules == {"managed-metadata-forged"} with input as create(alice, ns("payments-dev", base, {"nsprov.io/tier": "medium"}))
}

test_forged_label_mirrored_allowed if {
	labels := {"nsprov.io/team": "payments", "nsprov.io/environment": "development", "nsprov.io/tier": "micro"}
	obj := ns("payments-dev", object.union(base, {"nsprov.io/tier": "micro"}), labels)
	rules == set() with input as create(alice, obj)
}

test_forged_label_default_tier_allowed if {
	rules == set() with input as create(alice, ns("payments-dev", base, {"nsprov.io/tier": "small"}))
}

test_forged_label_other_prefixes_allowed if {
	labels := {"team": "billing", "example.com/nsprov.io": "x"}
	rules == set() with input as create(alice, ns("payments-dev", base, labels))
		with data.config.metadata.allowed_keys as ["team"]
		with data.config.metadata.allowed_prefixes as ["example.com/"]

	# A feature's label is not nsprov.io/ metadata: another rule, not this
	# one, keeps requesters from writing it.
	feature := {"monitoring.nsprov.io/enhanced": "true"}
	rules == {"metadata-not-allowed"} with input as create(alice, ns("payments-dev", base, feature))
}

test_forged_label_changed_on_update_denied if {
	new := ns("payments-dev", payments({}).metadata.annotations, object.union(payments({}).metadata.labels, {"nsprov.io/team": "billing"}))
	rules == {"managed-metadata-forged"} with input as update(alice, payments({}), new)
}

test_forged_label_added_on_update_denied if {
	new := ns("payments-dev", payments({}).metadata.annotations, object.union(payments({}).metadata.labels, {"nsprov.io/cost-center": "42"}))
	rules == {"managed-metadata-forged"} with input as update(alice, payments({}), new)
}

test_forged_label_unchanged_on_update_allowed if {
	old := ns("scratch", {}, {"nsprov.io/legacy": "yes"})
	new := ns("scratch", {"example.com/a": "1"}, {"nsprov.io/legacy": "yes"})
	rules == set() with input as update(alice, old, new) with data.config.metadata.allowed_prefixes as ["example.com/"]
	old2 := ns("payments-dev", payments({}).metadata.annotations, object.union(payments({}).metadata.labels, {"nsprov.io/provisioned": "true"}))
	rules == set() with input as update(alice, old2, old2)
}

test_forged_label_allowed_for_manager if {
	labels := {"nsprov.io/provisioned": "true", "nsprov.io/team": "billing"}
	rules == set() with input as create(controller, ns("payments-dev", base, labels))
	new := ns("payments-dev", payments({}).metadata.annotations, object.union(payments({}).metadata.labels, {"nsprov.io/provisioned": "true"}))
	rules == set() with input as update(provisioner, payments({}), new)
}

test_forged_label_not_allowed_for_admins if {
	rules == {"managed-metadata-forged"} with input as create(root, ns("payments-dev", base, {"nsprov.io/owner": "root"}))
}

# managed-metadata-forged: nsprov.io/requested-by

test_forged_requested_by_on_create_denied if {
	obj := request({"nsprov.io/requested-by": "mallory"})
	rules == {"managed-metadata-forged"} with input as create(alice, obj)
	msgs := messages_of("managed-metadata-forged") with input as create(alice, obj)
	msgs == {`annotation nsprov.io/requested-by="mallory" is written by nsprov and cannot be set by "alice"; remove it`}
}

test_forged_requested_by_own_name_on_create_allowed if {
	rules == set() with input as create(alice, request({"nsprov.io/requested-by": "alice"}))
}

test_forged_requested_by_on_bare_namespace_denied if {
	rules == {"managed-metadata-forged"} with input as create(root, ns("scratch", {"nsprov.io/requested-by": "root"}, {}))
}

test_forged_requested_by_changed_on_update_denied if {
	rules == {"managed-metadata-forged"} with input as update(carol, payments({}), payments({"nsprov.io/requested-by": "carol"}))
}

test_forged_requested_by_kept_on_update_allowed if {
	rules == set() with input as update(carol, payments({}), payments({"nsprov.io/tier": "medium"}))
}

test_forged_requested_by_first_set_on_update_allowed if {
	old := ns("payments-dev", base, {})
	new := ns("payments-dev", object.union(base, {"nsprov.io/requested-by": "carol"}), {})
	rules == set() with input as update(carol, old, new)
}

test_forged_requested_by_first_set_to_other_on_update_denied if {
	old := ns("payments-dev", base, {})
	new := ns("payments-dev", object.union(base, {"nsprov.io/requested-by": "alice"}), {})
	rules == {"managed-metadata-forged"} with input as update(carol, old, new)
}

test_forged_requested_by_allowed_for_manager if {
	rules == set() with input as update(controller, payments({}), payments({"nsprov.io/requested-by": "someone"}))
}

# managed-metadata-forged: nsprov.io/workflow

test_forged_workflow_on_create_denied if {
	obj := request({"nsprov.io/workflow": "argo/fake"})
	rules == {"managed-metadata-forged"} with input as create(alice, obj)
	msgs := messages_of("managed-metadata-forged") with input as create(alice, obj)
	msgs == {`annotation nsprov.io/workflow="argo/fake" is written by nsprov and cannot be set by "alice"; remove it`}
}

test_forged_workflow_for_admins_denied if {
	rules == {"managed-metadata-forged"} with input as create(root, request({"nsprov.io/workflow": "argo/fake"}))
}

test_forged_workflow_changed_on_update_denied if {
	old := payments({"nsprov.io/workflow": "argo/nsprov-payments-dev-1"})
	new := payments({"nsprov.io/workflow": "argo/other"})
	rules == {"managed-metadata-forged"} with input as update(alice, old, new)
}

test_forged_workflow_added_on_update_denied if {
	rules == {"managed-metadata-forged"} with input as update(alice, payments({}), payments({"nsprov.io/workflow": "argo/x"}))
}

test_forged_workflow_unchanged_on_update_allowed if {
	old := payments({"nsprov.io/workflow": "argo/nsprov-payments-dev-1"})
	new := payments({"nsprov.io/workflow": "argo/nsprov-payments-dev-1", "nsprov.io/tier": "medium"})
	rules == set() with input as update(alice, old, new)
}

test_forged_workflow_allowed_for_manager if {
	rules == set() with input as update(controller, payments({}), payments({"nsprov.io/workflow": "argo/nsprov-payments-dev-1"}))
	rules == set() with input as update(provisioner, payments({}), payments({"nsprov.io/workflow": "argo/nsprov-payments-dev-1"}))
}

test_forged_several_keys_reported_separately if {
	obj := ns("payments-dev", object.union(base, {"nsprov.io/requested-by": "mallory", "nsprov.io/workflow": "argo/x"}), {"nsprov.io/owner": "x"})
	violations := [v | some v in validation.deny; v.rule == "managed-metadata-forged"] with input as create(alice, obj)
	count(violations) == 3
}

# Several access violations at once.

test_several_access_violations_reported_together if {
	old := payments({"nsprov.io/workflow": "argo/wf"})
	annotations := {
		"nsprov.io/team": "billing",
		"nsprov.io/environment": "staging",
		"nsprov.io/requested-by": "bob",
		"nsprov.io/workflow": "argo/wf",
	}
	new := ns("payments-staging", annotations, {"nsprov.io/team": "payments"})
	r := rules with input as update(alice, old, new)
	r == {"requester-not-in-team", "team-immutable", "environment-immutable", "managed-metadata-forged"}
	count(r) == 4
}
