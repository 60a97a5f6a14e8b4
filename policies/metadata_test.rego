package nsprov.metadata_test

import data.nsprov.validation
import rego.v1

alice := {"username": "alice", "groups": ["system:authenticated", "team-payments"]}

pat := {"username": "pat", "groups": ["system:authenticated", "platform-admins"]}

root := {"username": "root", "groups": ["system:masters"]}

provisioner := {"username": "system:serviceaccount:argo:nsprov-provisioner", "groups": ["system:serviceaccounts"]}

kube_system_sa := {"username": "system:serviceaccount:kube-system:namespace-controller", "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system"]}

ns(annotations, labels) := {"metadata": {"name": "payments-dev", "annotations": annotations, "labels": labels}}

base := {"nsprov.io/team": "payments", "nsprov.io/environment": "development"}

mirrored := {"nsprov.io/team": "payments", "nsprov.io/environment": "development", "nsprov.io/tier": "small", "kubernetes.io/metadata.name": "payments-dev"}

# request(annotations, labels) is a fresh CREATE object with the request
# annotations and mirrored labels beside the given ones.
request(annotations, labels) := ns(object.union(base, annotations), object.union(mirrored, labels))

# stored(annotations, labels) is payments-dev as the webhook stored it.
stored(annotations, labels) := ns(object.union(object.union(base, {"nsprov.io/requested-by": "alice"}), annotations), object.union(mirrored, labels))

create(user, obj) := {"request": {"operation": "CREATE", "userInfo": user, "object": obj, "oldObject": null, "dryRun": false}}

update(user, old, new) := {"request": {"operation": "UPDATE", "userInfo": user, "object": new, "oldObject": old, "dryRun": false}}

rules := {v.rule | some v in validation.deny}

violations := {v | some v in validation.deny; v.rule == "metadata-not-allowed"}

messages := {v.message | some v in violations}

test_plain_request_allowed if {
	rules == set() with input as create(alice, request({}, {}))
}

test_system_keys_allowed if {
	applied := {"kubectl.kubernetes.io/last-applied-configuration": `{"apiVersion":"v1","kind":"Namespace"}`}
	rules == set() with input as create(alice, request(applied, {"kubernetes.io/metadata.name": "payments-dev"}))
}

test_pod_security_denied_on_create if {
	msgs := messages with input as create(alice, request({}, {"pod-security.kubernetes.io/enforce": "privileged"}))
	msgs == {`label pod-security.kubernetes.io/enforce="privileged" cannot be set by "alice": only admins and nsprov write it (policy data metadata.denied_keys, metadata.denied_prefixes, features); remove it, or ask a platform admin`}
}

test_node_selector_denied_on_create if {
	r := rules with input as create(alice, request({"scheduler.alpha.kubernetes.io/node-selector": "pool=gpu"}, {}))
	r == {"metadata-not-allowed"}
}

test_feature_labels_denied if {
	r := rules with input as create(alice, request({}, {"istio-injection": "enabled"}))
	r == {"metadata-not-allowed"}
	r2 := rules with input as create(alice, request({}, {"monitoring.nsprov.io/enhanced": "true"}))
	r2 == {"metadata-not-allowed"}
}

test_unlisted_key_denied_by_default if {
	msgs := messages with input as create(alice, request({"example.com/owner": "alice"}, {}))
	msgs == {`annotation example.com/owner="alice" cannot be set by "alice": requesters may write only the keys the policy data allows (metadata.allowed_keys, metadata.allowed_prefixes); remove it, or ask a platform admin`}
}

test_one_violation_per_key if {
	labels := {"pod-security.kubernetes.io/enforce": "privileged", "pod-security.kubernetes.io/warn": "privileged", "istio-injection": "enabled"}
	annotations := {"scheduler.alpha.kubernetes.io/node-selector": "a=b"}
	vs := violations with input as create(alice, request(annotations, labels))
	count(vs) == 4
	every key in object.keys(labels) | object.keys(annotations) {
		some v in vs
		contains(v.message, sprintf(" %s", [key]))
	}
}

test_allowlist_opens_keys_and_prefixes if {
	obj := request({"example.com/owner": "alice"}, {"cost-center": "42"})
	rules == set() with input as create(alice, obj)
		with data.config.metadata.allowed_keys as ["cost-center"]
		with data.config.metadata.allowed_prefixes as ["example.com/"]
	rules == {"metadata-not-allowed"} with input as create(alice, obj)
		with data.config.metadata.allowed_keys as ["cost-center"]
}

test_allowlist_cannot_open_denylist if {
	labels := {"pod-security.kubernetes.io/enforce": "privileged", "istio-injection": "enabled"}
	annotations := {"scheduler.alpha.kubernetes.io/node-selector": "a=b"}
	vs := violations with input as create(alice, request(annotations, labels))
		with data.config.metadata.allowed_keys as ["istio-injection", "scheduler.alpha.kubernetes.io/node-selector"]
		with data.config.metadata.allowed_prefixes as ["pod-security.kubernetes.io/", ""]
	count(vs) == 3
}

test_admins_managers_and_exempt_write_anything if {
	labels := {"pod-security.kubernetes.io/enforce": "privileged", "istio-injection": "enabled"}
	every user in [pat, root, provisioner, kube_system_sa] {
		not "metadata-not-allowed" in rules with input as create(user, request({}, labels))
		not "metadata-not-allowed" in rules with input as update(user, stored({}, {}), stored({}, labels))
	}
}

test_update_adding_key_denied if {
	rules == {"metadata-not-allowed"} with input as update(alice, stored({}, {}), stored({}, {"pod-security.kubernetes.io/enforce": "privileged"}))
}

test_update_changing_key_denied if {
	old := stored({}, {"pod-security.kubernetes.io/enforce": "restricted"})
	new := stored({}, {"pod-security.kubernetes.io/enforce": "privileged"})
	rules == {"metadata-not-allowed"} with input as update(alice, old, new)
}

test_update_removing_key_denied if {
	old := stored({}, {"pod-security.kubernetes.io/enforce": "restricted"})
	msgs := messages with input as update(alice, old, stored({}, {}))
	msgs == {`label pod-security.kubernetes.io/enforce cannot be removed by "alice": only admins and nsprov write it (policy data metadata.denied_keys, metadata.denied_prefixes, features); put it back ("restricted"), or ask a platform admin`}
}

# Existing namespaces never freeze: keys set by an admin or by nsprov stay,
# and a requester changes the rest of the namespace.
test_update_keeping_keys_allowed if {
	labels := {"pod-security.kubernetes.io/enforce": "baseline", "istio-injection": "enabled", "legacy": "x"}
	old := stored({"example.com/owner": "ops"}, labels)
	new := stored({"example.com/owner": "ops", "nsprov.io/tier": "medium"}, object.union(labels, {"nsprov.io/tier": "medium"}))
	rules == set() with input as update(alice, old, new)
	rules == set() with input as update(alice, old, old)
}

test_nsprov_keys_left_to_other_rules if {
	r := rules with input as create(alice, request({}, {"nsprov.io/team": "billing"}))
	not "metadata-not-allowed" in r
}
