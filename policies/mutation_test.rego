package nsprov.mutation_test

import data.nsprov.mutation
import rego.v1

alice := {"username": "alice", "groups": ["system:authenticated", "team-payments"]}

carol := {"username": "carol", "groups": ["system:authenticated", "team-payments"]}

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

# request(env, extra) is a CREATE by alice of a payments namespace in env
# with extra annotations.
request(env, extra) := create(alice, ns(
	"payments",
	object.union({"nsprov.io/team": "payments", "nsprov.io/environment": env}, extra),
	{},
))

test_defaults_in_development if {
	mutation.result == {
		"annotations": {
			"nsprov.io/tier": "small",
			"nsprov.io/network-policy": "isolated",
			"nsprov.io/requested-by": "alice",
			"nsprov.io/provisioning": "Pending",
		},
		"labels": {
			"nsprov.io/team": "payments",
			"nsprov.io/environment": "development",
			"nsprov.io/tier": "small",
		},
	} with input as request("development", {})
}

test_defaults_in_staging if {
	result := mutation.result with input as request("staging", {})
	result.annotations["nsprov.io/tier"] == "medium"
	result.labels["nsprov.io/tier"] == "medium"
	result.annotations["nsprov.io/network-policy"] == "isolated"
	result.labels["nsprov.io/environment"] == "staging"
}

test_defaults_in_production if {
	mutation.result == {
		"annotations": {
			"nsprov.io/tier": "medium",
			"nsprov.io/network-policy": "isolated",
			"nsprov.io/requested-by": "alice",
			"nsprov.io/provisioning": "Pending",
		},
		"labels": {
			"nsprov.io/team": "payments",
			"nsprov.io/environment": "production",
			"nsprov.io/tier": "medium",
		},
	} with input as request("production", {})
}

test_explicit_tier_and_network_policy_kept if {
	result := mutation.result with input as request("staging", {"nsprov.io/tier": "large", "nsprov.io/network-policy": "team"})
	result.annotations["nsprov.io/tier"] == "large"
	result.labels["nsprov.io/tier"] == "large"
	result.annotations["nsprov.io/network-policy"] == "team"
}

# The mutation of a namespace it already mutated sets the values it already
# has, so the webhook sends no patch for a re-applied namespace.
test_mutation_of_mutated_namespace_is_the_same if {
	first := mutation.result with input as request("development", {"nsprov.io/features": "istio, Monitoring-Enhanced"})
	annotations := object.union({"nsprov.io/team": "payments", "nsprov.io/environment": "development"}, first.annotations)
	second := mutation.result with input as create(alice, ns("payments", annotations, first.labels))
	second == first
	second.annotations["nsprov.io/features"] == annotations["nsprov.io/features"]
}

test_network_policy_default_isolated if {
	result := mutation.result with input as request("staging", {"nsprov.io/tier": "large"})
	result.annotations["nsprov.io/network-policy"] == "isolated"
}

test_features_normalised if {
	result := mutation.result with input as request("development", {"nsprov.io/features": " Monitoring-Enhanced, istio,ISTIO ,,"})
	result.annotations["nsprov.io/features"] == "istio,monitoring-enhanced"
}

# A features value over its limit is left as it is, not split (validation
# denies it once, annotation-too-long).
test_features_too_long_left_alone if {
	long := concat(",", [sprintf("f%d", [i]) | some i in numbers.range(1, 400)])
	result := mutation.result with input as request("development", {"nsprov.io/features": long})
	not result.annotations["nsprov.io/features"]
}

test_features_single_kept if {
	result := mutation.result with input as request("development", {"nsprov.io/features": "istio"})
	result.annotations["nsprov.io/features"] == "istio"
}

test_features_unknown_kept_normalised if {
	result := mutation.result with input as request("development", {"nsprov.io/features": "Tracing , istio"})
	result.annotations["nsprov.io/features"] == "istio,tracing"
}

test_features_empty_list_removed if {
	result := mutation.result with input as request("development", {"nsprov.io/features": ""})
	result.annotations["nsprov.io/features"] == null
	"nsprov.io/features" in object.keys(result.annotations)
}

test_features_blank_list_removed if {
	result := mutation.result with input as request("development", {"nsprov.io/features": " , ,"})
	result.annotations["nsprov.io/features"] == null
}

test_features_absent_not_added if {
	result := mutation.result with input as request("development", {})
	not "nsprov.io/features" in object.keys(result.annotations)
	count(result.annotations) == 4
}

test_labels_mirror_annotations if {
	result := mutation.result with input as request("production", {"nsprov.io/tier": "large"})
	result.labels == {
		"nsprov.io/team": "payments",
		"nsprov.io/environment": "production",
		"nsprov.io/tier": "large",
	}
}

test_labels_replace_forged_values if {
	obj := ns("payments-dev", {"nsprov.io/team": "payments", "nsprov.io/environment": "development"}, {
		"nsprov.io/team": "billing",
		"nsprov.io/environment": "production",
		"nsprov.io/tier": "large",
	})
	result := mutation.result with input as create(alice, obj)
	result.labels == {
		"nsprov.io/team": "payments",
		"nsprov.io/environment": "development",
		"nsprov.io/tier": "small",
	}
}

test_invalid_team_not_mirrored if {
	result := mutation.result with input as request("development", {"nsprov.io/team": "Bad_Team"})
	result.labels == {"nsprov.io/environment": "development", "nsprov.io/tier": "small"}
	not "nsprov.io/team" in object.keys(result.labels)
}

test_invalid_team_label_removed if {
	obj := ns("payments-dev", {"nsprov.io/team": "Bad_Team", "nsprov.io/environment": "development"}, {"nsprov.io/team": "payments"})
	result := mutation.result with input as create(alice, obj)
	result.labels["nsprov.io/team"] == null
	"nsprov.io/team" in object.keys(result.labels)
}

test_invalid_environment_not_mirrored if {
	result := mutation.result with input as request("qa", {})
	result == {
		"annotations": {
			"nsprov.io/network-policy": "isolated",
			"nsprov.io/requested-by": "alice",
			"nsprov.io/provisioning": "Pending",
		},
		"labels": {"nsprov.io/team": "payments"},
	}
}

test_invalid_tier_not_mirrored if {
	obj := ns("payments-dev", {"nsprov.io/team": "payments", "nsprov.io/environment": "development", "nsprov.io/tier": "huge"}, {"nsprov.io/tier": "huge"})
	result := mutation.result with input as create(alice, obj)
	result.annotations["nsprov.io/tier"] == "huge"
	result.labels == {
		"nsprov.io/team": "payments",
		"nsprov.io/environment": "development",
		"nsprov.io/tier": null,
	}
}

test_removed_annotation_label_removed if {
	old := ns("payments-dev", {"nsprov.io/team": "payments", "nsprov.io/environment": "development"}, {
		"nsprov.io/team": "payments",
		"nsprov.io/environment": "development",
		"nsprov.io/tier": "small",
	})
	new := ns("payments-dev", {"nsprov.io/environment": "development", "nsprov.io/requested-by": "alice"}, old.metadata.labels)
	result := mutation.result with input as update(alice, old, new)
	result.labels == {
		"nsprov.io/team": null,
		"nsprov.io/environment": "development",
		"nsprov.io/tier": "small",
	}
}

test_requested_by_set_on_create if {
	result := mutation.result with input as request("development", {})
	result.annotations["nsprov.io/requested-by"] == "alice"
}

test_requested_by_client_value_replaced_on_create if {
	result := mutation.result with input as request("development", {"nsprov.io/requested-by": "mallory"})
	result.annotations["nsprov.io/requested-by"] == "alice"
}

test_requested_by_kept_on_update if {
	old := ns("payments-dev", {"nsprov.io/team": "payments", "nsprov.io/environment": "development", "nsprov.io/requested-by": "alice"}, {})
	new := ns("payments-dev", {"nsprov.io/team": "payments", "nsprov.io/environment": "development", "nsprov.io/requested-by": "carol", "nsprov.io/tier": "medium"}, {})
	result := mutation.result with input as update(carol, old, new)
	result.annotations["nsprov.io/requested-by"] == "alice"
	result.annotations["nsprov.io/tier"] == "medium"
}

test_requested_by_set_on_update_without_previous_requester if {
	old := ns("payments-dev", {}, {})
	new := ns("payments-dev", {"nsprov.io/team": "payments", "nsprov.io/environment": "development"}, {})
	result := mutation.result with input as update(carol, old, new)
	result.annotations["nsprov.io/requested-by"] == "carol"
}

test_bare_namespace_untouched if {
	mutation.result == {"annotations": {}, "labels": {}} with input as create(alice, ns("scratch", {}, {}))
}

test_bare_namespace_without_metadata_maps_untouched if {
	mutation.result == {"annotations": {}, "labels": {}} with input as create(alice, {"metadata": {"name": "scratch"}})
}

test_bare_namespace_with_other_annotations_untouched if {
	obj := ns("scratch", {"nsprov.io/reprovision": "1", "nsprov.io/requested-by": "mallory", "example.com/team": "payments"}, {"nsprov.io/team": "payments"})
	mutation.result == {"annotations": {}, "labels": {}} with input as create(alice, obj)
}

test_bare_namespace_update_untouched if {
	old := ns("scratch", {}, {})
	new := ns("scratch", {"example.com/a": "1"}, {"app": "x"})
	mutation.result == {"annotations": {}, "labels": {}} with input as update(alice, old, new)
}

test_released_namespace_loses_mirrored_labels if {
	old := ns("payments-dev", {"nsprov.io/team": "payments", "nsprov.io/environment": "development", "nsprov.io/tier": "small"}, {"nsprov.io/team": "payments", "nsprov.io/environment": "development", "nsprov.io/tier": "small"})
	new := ns("payments-dev", {"nsprov.io/requested-by": "alice"}, {"nsprov.io/team": "payments", "nsprov.io/environment": "development", "nsprov.io/tier": "small", "app": "x"})
	mutation.result == {"annotations": {}, "labels": {
		"nsprov.io/team": null,
		"nsprov.io/environment": null,
		"nsprov.io/tier": null,
	}} with input as update({"username": "root", "groups": ["system:masters"]}, old, new)
}

# nsprov.io/provisioning and nsprov.io/provisioned-plan

stored := ns("payments", {
	"nsprov.io/team": "payments", "nsprov.io/environment": "development", "nsprov.io/tier": "small",
	"nsprov.io/network-policy": "isolated", "nsprov.io/requested-by": "alice",
	"nsprov.io/provisioning": "Succeeded", "nsprov.io/provisioned-plan": "abc.def",
}, {})

with_annotations(o, a) := object.union(o, {"metadata": {"annotations": object.union(o.metadata.annotations, a)}})

nsprov_sa := {"username": "system:serviceaccount:nsprov-system:nsprov", "groups": ["system:serviceaccounts", "system:authenticated"]}

test_provisioning_pending_on_create if {
	result := mutation.result with input as request("development", {"nsprov.io/provisioning": "Succeeded", "nsprov.io/provisioned-plan": "x"})
	result.annotations["nsprov.io/provisioning"] == "Pending"
	result.annotations["nsprov.io/provisioned-plan"] == null
}

test_provisioning_pending_for_each_change if {
	every change in [
		{"nsprov.io/tier": "medium"},
		{"nsprov.io/features": "istio"},
		{"nsprov.io/reprovision": "1"},
		{"nsprov.io/tier": "medium", "nsprov.io/provisioning": "Succeeded"},
	] {
		result := mutation.result with input as update(alice, stored, with_annotations(stored, change))
		result.annotations["nsprov.io/provisioning"] == "Pending"
	}
}

test_requester_cannot_set_nsprov_state if {
	new := with_annotations(stored, {"nsprov.io/provisioning": "Failed", "nsprov.io/provisioned-plan": "forged", "example.com/owner": "x"})
	result := mutation.result with input as update(alice, stored, new)
	result.annotations["nsprov.io/provisioning"] == "Succeeded"
	result.annotations["nsprov.io/provisioned-plan"] == "abc.def"
}

test_nsprov_writes_its_state if {
	new := with_annotations(stored, {"nsprov.io/provisioning": "Failed", "nsprov.io/provisioned-plan": "new.plan"})
	result := mutation.result with input as update(nsprov_sa, stored, new)
	not "nsprov.io/provisioning" in object.keys(result.annotations)
	not "nsprov.io/provisioned-plan" in object.keys(result.annotations)
}

test_cancel_is_not_a_change_of_the_request if {
	new := with_annotations(stored, {"nsprov.io/cancel": "true"})
	result := mutation.result with input as update(alice, stored, new)
	not "nsprov.io/provisioning" in object.keys(result.annotations)
}
