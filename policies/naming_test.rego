package nsprov.naming_test

import data.nsprov.validation
import rego.v1

alice := {"username": "alice", "groups": ["system:authenticated", "team-payments"]}

admin := {"username": "root", "groups": ["system:masters"]}

ns(name, annotations) := {"metadata": {"name": name, "annotations": annotations, "labels": {}}}

create(user, obj) := {"request": {
	"operation": "CREATE",
	"userInfo": user,
	"object": obj,
	"oldObject": null,
	"dryRun": false,
}}

# request(name, env) is a CREATE by alice of a payments namespace in env.
request(name, env) := create(alice, ns(name, {"nsprov.io/team": "payments", "nsprov.io/environment": env}))

rules := {v.rule | some v in validation.deny}

messages_of(rule) := {v.message | some v in validation.deny; v.rule == rule}

# name-environment-suffix

test_name_suffix_allowed_per_environment if {
	rules == set() with input as request("payments-dev", "development")
	rules == set() with input as request("payments-staging", "staging")
	rules == set() with input as request("payments-prod", "production")
}

test_name_suffix_denied_without_suffix if {
	rules == {"name-environment-suffix"} with input as request("payments", "development")
}

test_name_suffix_denied_with_other_environment_suffix if {
	rules == {"name-environment-suffix"} with input as request("payments-dev", "production")
	rules == {"name-environment-suffix"} with input as request("payments-prod", "staging")
}

test_name_suffix_denied_when_suffix_not_at_end if {
	rules == {"name-environment-suffix"} with input as request("payments-dev-1", "development")
}

test_name_suffix_message_without_suffix if {
	msgs := messages_of("name-environment-suffix") with input as request("payments", "development")
	msgs == {`namespace "payments" is in development and must end with "-dev", for example payments-dev`}
}

test_name_suffix_message_replaces_wrong_suffix if {
	msgs := messages_of("name-environment-suffix") with input as request("payments-prod", "staging")
	msgs == {`namespace "payments-prod" is in staging and must end with "-staging", for example payments-staging`}
}

test_name_suffix_not_checked_for_unknown_environment if {
	rules == {"environment-invalid"} with input as request("payments", "qa")
}

test_name_suffix_applies_to_admins if {
	rules == {"name-environment-suffix"} with input as create(admin, ns("payments", {"nsprov.io/team": "payments", "nsprov.io/environment": "production"}))
}

test_name_suffix_not_checked_for_bare_namespace if {
	rules == set() with input as create(admin, ns("payments", {}))
}

# name-reserved

test_name_reserved_prefix_kube if {
	rules == {"name-reserved"} with input as request("kube-payments-dev", "development")
}

test_name_reserved_prefix_openshift if {
	rules == {"name-reserved"} with input as request("openshift-payments-staging", "staging")
}

test_name_reserved_prefix_nsprov if {
	rules == {"name-reserved"} with input as request("nsprov-payments-prod", "production")
}

test_name_reserved_prefix_message if {
	msgs := messages_of("name-reserved") with input as request("kube-payments-dev", "development")
	msgs == {`namespace "kube-payments-dev" starts with "kube-", which is reserved for the platform; choose another name`}
}

test_name_reserved_exact_name if {
	rules == {"name-reserved", "name-environment-suffix"} with input as request("monitoring", "development")
	rules == {"name-reserved", "name-environment-suffix"} with input as request("default", "production")
	rules == {"name-reserved", "name-environment-suffix"} with input as request("argo", "staging")
}

test_name_reserved_exact_name_message if {
	msgs := messages_of("name-reserved") with input as request("cert-manager", "development")
	msgs == {`namespace "cert-manager" is a reserved name; choose another name`}
}

test_name_reserved_prefix_and_exact_both_reported if {
	violations := [v | some v in validation.deny; v.rule == "name-reserved"] with input as request("nsprov-system", "development")
	count(violations) == 2
}

# An installation in platform-tools with Argo in workflows (the chart's
# config/install.yaml) reserves those namespaces, and no longer the defaults.
platform_tools := {"namespace": "platform-tools", "argo_namespace": "workflows", "manager_users": []}

test_name_reserved_install_namespaces if {
	msgs := messages_of("name-reserved") with input as request("platform-tools", "development")
		with data.config.install as platform_tools
	msgs == {`namespace "platform-tools" is a reserved name; choose another name`}
	"name-reserved" in rules with input as request("workflows", "development") with data.config.install as platform_tools
	not "name-reserved" in rules with input as request("platform-tools", "development")
}

test_name_reserved_allowed_similar_names if {
	rules == set() with input as request("kubeflow-dev", "development")
	rules == set() with input as request("my-kube-dev", "development")
	rules == set() with input as request("monitoring-dev", "development")
	rules == set() with input as request("nsprovider-dev", "development")
}

test_name_reserved_applies_to_admins if {
	rules == {"name-reserved"} with input as create(admin, ns("kube-payments-dev", {"nsprov.io/team": "payments", "nsprov.io/environment": "development"}))
}

test_name_reserved_not_checked_for_bare_namespace if {
	rules == set() with input as create(admin, ns("kube-node-lease", {}))
	rules == set() with input as create(admin, ns("monitoring", {}))
}

# A name reserved after the namespace was created does not freeze it.
test_name_reserved_later_not_on_update_keeping_the_request if {
	old := {"request": {"operation": "CREATE", "userInfo": alice, "object": {"metadata": {"name": "payments-dev", "annotations": {"nsprov.io/team": "payments", "nsprov.io/environment": "development"}}}}}
	rules == {"name-reserved"} with input as old with data.config.names.reserved as ["payments-dev"]
	labelled := json.patch(old.request.object, [{"op": "add", "path": "/metadata/labels", "value": {"example.com/owner": "ops"}}])
	rules == set() with input as {"request": {"operation": "UPDATE", "userInfo": admin, "object": labelled, "oldObject": old.request.object}}
		with data.config.names.reserved as ["payments-dev"]
}
