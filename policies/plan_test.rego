package nsprov.plan_test

import data.nsprov.mutation
import data.nsprov.plan
import data.nsprov.validation
import rego.v1

alice := {"username": "alice", "groups": ["system:authenticated", "team-payments"]}

bob := {"username": "bob", "groups": ["system:authenticated", "team-billing"]}

root := {"username": "root", "groups": ["system:masters"]}

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

# payments(env, extra) is a payments namespace in env with extra annotations.
payments(env, extra) := ns(
	concat("", ["payments", suffix[env]]),
	object.union({"nsprov.io/team": "payments", "nsprov.io/environment": env}, extra),
)

# patched(current, changes) applies a mutation map: a null value removes the key.
patched(current, changes) := {k: v |
	some k, v in object.union(current, changes)
	v != null
}

# mutated(inp) is inp with its object as the mutating webhook leaves it.
mutated(inp) := object.union(inp, {"request": {"object": {"metadata": {
	"annotations": patched(object.get(inp.request.object, ["metadata", "annotations"], {}), result.annotations),
	"labels": patched(object.get(inp.request.object, ["metadata", "labels"], {}), result.labels),
}}}}) if {
	result := mutation.result with input as inp
}

test_plan_for_full_production_request if {
	inp := create(alice, payments("production", {
		"nsprov.io/tier": "large",
		"nsprov.io/network-policy": "team",
		"nsprov.io/features": "monitoring-enhanced, Istio",
	}))
	plan.plan == {
		"namespace": "payments-prod",
		"team": "payments",
		"environment": "production",
		"tier": "large",
		"monthly_cost_usd": 400,
		"quota": {"cpu": "8", "memory": "16Gi", "storage": "100Gi"},
		"container_defaults": {"cpu": "2", "memory": "2Gi"},
		"container_default_requests": {"cpu": "250m", "memory": "512Mi"},
		"role_bindings": [{"name": "nsprov-team-edit", "cluster_role": "edit", "group": "team-payments"}],
		"network_policy": {
			"mode": "team",
			"description": "isolated, plus ingress from the namespaces of the same team",
			"default_deny": true,
			"allow_dns": true,
			"allow_same_namespace": true,
			"allow_team": true,
			"allow_ingress_from": ["istio-system", "monitoring"],
			"allow_egress_to": ["istio-system"],
		},
		"features": ["istio", "monitoring-enhanced"],
		"namespace_labels": {"istio-injection": "enabled", "monitoring.nsprov.io/enhanced": "true"},
	} with input as inp
}

test_plan_defaults_in_development if {
	p := plan.plan with input as create(alice, payments("development", {}))
	p.namespace == "payments-dev"
	p.tier == "small"
	p.monthly_cost_usd == 100
	p.quota == {"cpu": "2", "memory": "4Gi", "storage": "20Gi"}
	p.container_defaults == {"cpu": "500m", "memory": "512Mi"}
	p.container_default_requests == {"cpu": "100m", "memory": "128Mi"}
	p.features == []
	p.namespace_labels == {"istio-injection": null, "monitoring.nsprov.io/enhanced": null}
	p.network_policy == {
		"mode": "isolated",
		"description": "deny by default; DNS and traffic inside the namespace allowed",
		"default_deny": true,
		"allow_dns": true,
		"allow_same_namespace": true,
		"allow_team": false,
		"allow_ingress_from": [],
		"allow_egress_to": [],
	}
}

test_plan_quota_from_tier if {
	p := plan.plan with input as create(alice, payments("staging", {}))
	p.tier == "medium"
	p.monthly_cost_usd == 200
	p.quota == {"cpu": "4", "memory": "8Gi", "storage": "50Gi"}
	p.container_defaults == {"cpu": "1", "memory": "1Gi"}
	p.container_default_requests == {"cpu": "100m", "memory": "256Mi"}
	p2 := plan.plan with input as create(alice, payments("development", {"nsprov.io/tier": "micro"}))
	p2.quota == {"cpu": "1", "memory": "2Gi", "storage": "10Gi"}
	p2.monthly_cost_usd == 50
}

test_plan_role_binding_group_per_team if {
	user := {"username": "dana", "groups": ["team-billing"]}
	obj := ns("billing-dev", {"nsprov.io/team": "billing", "nsprov.io/environment": "development"})
	p := plan.plan with input as create(user, obj)
	p.team == "billing"
	p.role_bindings == [{"name": "nsprov-team-edit", "cluster_role": "edit", "group": "team-billing"}]
}

test_plan_open_network_policy if {
	p := plan.plan with input as create(alice, payments("staging", {"nsprov.io/network-policy": "open", "nsprov.io/features": "istio"}))
	p.network_policy.mode == "open"
	p.network_policy.default_deny == false
	p.network_policy.allow_dns == false
	p.network_policy.allow_same_namespace == false
	p.network_policy.allow_team == false

	# Without a default deny an allow policy would isolate the pods, so open
	# mode opens nothing for the features; their labels are still set.
	p.network_policy.allow_ingress_from == []
	p.network_policy.allow_egress_to == []
	p.namespace_labels == {"istio-injection": "enabled", "monitoring.nsprov.io/enhanced": null}
}

test_plan_monitoring_feature_only if {
	p := plan.plan with input as create(alice, payments("development", {"nsprov.io/features": "monitoring-enhanced"}))
	p.features == ["monitoring-enhanced"]
	p.network_policy.allow_ingress_from == ["monitoring"]
	p.network_policy.allow_egress_to == []
	p.namespace_labels == {"istio-injection": null, "monitoring.nsprov.io/enhanced": "true"}
}

test_plan_for_admin_request_outside_team if {
	p := plan.plan with input as create(root, payments("production", {}))
	p.team == "payments"
	p.role_bindings[0].group == "team-payments"
}

test_plan_on_valid_update if {
	old := payments("staging", {"nsprov.io/requested-by": "alice"})
	new := payments("staging", {"nsprov.io/requested-by": "alice", "nsprov.io/tier": "large"})
	p := plan.plan with input as update(alice, old, new)
	p.tier == "large"
	p.quota.cpu == "8"
}

test_plan_undefined_when_denied if {
	not plan.plan with input as create(bob, payments("development", {}))
	not plan.plan with input as create(alice, payments("production", {"nsprov.io/network-policy": "open"}))
	not plan.plan with input as create(alice, payments("development", {"nsprov.io/features": "tracing"}))
	not plan.plan with input as create(alice, ns("payments", {"nsprov.io/team": "payments", "nsprov.io/environment": "development"}))
}

test_plan_undefined_when_denied_on_update if {
	old := payments("staging", {"nsprov.io/requested-by": "alice"})
	new := payments("staging", {"nsprov.io/requested-by": "alice", "nsprov.io/workflow": "argo/fake"})
	not plan.plan with input as update(alice, old, new)
}

test_plan_undefined_for_bare_namespace if {
	not plan.plan with input as create(root, ns("scratch", {}))
	not plan.plan with input as create(alice, ns("scratch", {}))
	not plan.plan with input as update(alice, ns("scratch", {}), ns("scratch", {"example.com/a": "1"}))
}

# The whole admission path: mutate, validate the mutated object, then plan.

test_mutated_request_validates_and_plans if {
	inp := mutated(create(alice, payments("staging", {"nsprov.io/features": " ISTIO,istio", "nsprov.io/requested-by": "mallory"})))
	inp.request.object.metadata.annotations == {
		"nsprov.io/team": "payments",
		"nsprov.io/environment": "staging",
		"nsprov.io/tier": "medium",
		"nsprov.io/network-policy": "isolated",
		"nsprov.io/features": "istio",
		"nsprov.io/requested-by": "alice",
		"nsprov.io/provisioning": "Pending",
	}
	inp.request.object.metadata.labels == {
		"nsprov.io/team": "payments",
		"nsprov.io/environment": "staging",
		"nsprov.io/tier": "medium",
	}
	validation.deny == set() with input as inp
	p := plan.plan with input as inp
	p.features == ["istio"]
	p.tier == "medium"
}

test_mutated_update_by_other_member_validates if {
	stored := mutated(create(alice, payments("development", {}))).request.object
	changed := object.union(stored, {"metadata": {"annotations": {"nsprov.io/tier": "medium"}}})
	inp := mutated(update({"username": "carol", "groups": ["team-payments"]}, stored, changed))
	inp.request.object.metadata.annotations["nsprov.io/requested-by"] == "alice"
	inp.request.object.metadata.labels["nsprov.io/tier"] == "medium"
	validation.deny == set() with input as inp
	p := plan.plan with input as inp
	p.tier == "medium"
}
