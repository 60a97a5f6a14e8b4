package nsprov.lib_test

import data.nsprov.lib
import rego.v1

ns(annotations) := {"metadata": {"name": "payments-dev", "annotations": annotations, "labels": {}}}

req(user, groups, obj) := {"request": {
	"operation": "CREATE",
	"userInfo": {"username": user, "groups": groups},
	"object": obj,
	"oldObject": null,
	"dryRun": false,
}}

test_features_normalised if {
	lib.features_of({"metadata": {"annotations": {"nsprov.io/features": " Istio, istio,,monitoring-enhanced "}}}) == ["istio", "monitoring-enhanced"]
}

test_features_sorted if {
	lib.features_of(ns({"nsprov.io/features": "monitoring-enhanced,istio"})) == ["istio", "monitoring-enhanced"]
}

test_features_absent_is_empty if {
	lib.features_of(ns({})) == []
}

test_features_blank_is_empty if {
	lib.features_of(ns({"nsprov.io/features": " , ,"})) == []
}

test_annotations_of_null_is_empty if {
	lib.annotations_of(null) == {}
	lib.labels_of(null) == {}
}

test_annotations_of_missing_metadata_is_empty if {
	lib.annotations_of({"metadata": {"name": "x"}}) == {}
	lib.labels_of({"metadata": {"name": "x"}}) == {}
}

test_requested_with_any_request_annotation if {
	lib.requested(ns({"nsprov.io/tier": "small"}))
	lib.requested(ns({"nsprov.io/features": "istio"}))
}

test_not_requested_without_request_annotation if {
	not lib.requested(ns({}))
	not lib.requested(ns({"nsprov.io/reprovision": "1", "nsprov.io/workflow": "argo/wf", "example.com/team": "x"}))
	not lib.requested(null)
}

test_valid_team_accepts_dns_labels if {
	lib.valid_team("a")
	lib.valid_team("payments")
	lib.valid_team("team-1")
	lib.valid_team("0team")
}

test_valid_team_max_40_characters if {
	forty := concat("", [c | some _ in numbers.range(1, 40); c := "a"])
	count(forty) == 40
	lib.valid_team(forty)
	not lib.valid_team(concat("", [forty, "a"]))
}

test_valid_team_rejects_non_dns_labels if {
	not lib.valid_team("")
	not lib.valid_team("Payments")
	not lib.valid_team("-payments")
	not lib.valid_team("payments-")
	not lib.valid_team("pay_ments")
	not lib.valid_team("pay.ments")
	not lib.valid_team(42)
}

test_tier_explicit if {
	lib.tier_of(ns({"nsprov.io/environment": "development", "nsprov.io/tier": "micro"})) == "micro"
}

test_tier_default_per_environment if {
	lib.tier_of(ns({"nsprov.io/environment": "development"})) == "small"
	lib.tier_of(ns({"nsprov.io/environment": "staging"})) == "medium"
	lib.tier_of(ns({"nsprov.io/environment": "production"})) == "medium"
}

test_tier_undefined_without_environment_or_tier if {
	not lib.tier_of(ns({"nsprov.io/team": "payments"}))
	not lib.tier_of(ns({"nsprov.io/environment": "qa"}))
}

test_network_policy_default_isolated if {
	lib.network_policy_of(ns({"nsprov.io/team": "payments"})) == "isolated"
	lib.network_policy_of(ns({"nsprov.io/network-policy": "open"})) == "open"
}

test_team_group if {
	lib.team_group("payments") == "team-payments"
}

test_effective_values_from_input if {
	obj := ns({
		"nsprov.io/team": "payments",
		"nsprov.io/environment": "staging",
		"nsprov.io/features": "ISTIO",
	})
	lib.team == "payments" with input as req("alice", [], obj)
	lib.environment == "staging" with input as req("alice", [], obj)
	lib.tier == "medium" with input as req("alice", [], obj)
	lib.network_policy == "isolated" with input as req("alice", [], obj)
	lib.features == ["istio"] with input as req("alice", [], obj)
	lib.name == "payments-dev" with input as req("alice", [], obj)
	lib.username == "alice" with input as req("alice", [], obj)
}

test_admin_groups if {
	lib.is_admin with input as req("root", ["system:masters"], ns({}))
	lib.is_admin with input as req("pat", ["system:authenticated", "platform-admins"], ns({}))
	not lib.is_admin with input as req("alice", ["team-payments"], ns({}))
}

test_exempt_groups if {
	lib.is_exempt with input as req("system:serviceaccount:kube-system:ctrl", ["system:serviceaccounts:kube-system"], ns({}))
	not lib.is_exempt with input as req("alice", ["team-payments"], ns({}))
}

test_manager_users if {
	lib.is_manager with input as req("system:serviceaccount:nsprov-system:nsprov", [], ns({}))
	lib.is_manager with input as req("system:serviceaccount:argo:nsprov-provisioner", [], ns({}))
	not lib.is_manager with input as req("system:serviceaccount:argo:other", [], ns({}))
}

# The chart renders config/install.yaml from its release: nsprov's identities
# follow the release namespace and argo.namespace, and the defaults are no
# longer trusted.
test_manager_users_follow_install if {
	install := {"namespace": "platform-tools", "argo_namespace": "workflows", "manager_users": [
		"system:serviceaccount:platform-tools:nsprov",
		"system:serviceaccount:workflows:nsprov-provisioner",
	]}
	lib.is_manager with input as req("system:serviceaccount:platform-tools:nsprov", [], ns({})) with data.config.install as install
	lib.is_manager with input as req("system:serviceaccount:workflows:nsprov-provisioner", [], ns({})) with data.config.install as install
	not lib.is_manager with input as req("system:serviceaccount:nsprov-system:nsprov", [], ns({})) with data.config.install as install
	not lib.is_manager with input as req("system:serviceaccount:argo:nsprov-provisioner", [], ns({})) with data.config.install as install
}

test_missing_user_info_defaults if {
	lib.username == "" with input as {"request": {"operation": "CREATE", "object": ns({})}}
	lib.groups == [] with input as {"request": {"operation": "CREATE", "object": ns({})}}
	lib.old_annotations == {} with input as {"request": {"operation": "CREATE", "object": ns({})}}
}
