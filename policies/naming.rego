# nsprov naming rules: A requested namespace's name tells its environment and
# stays clear of names that the platform reserves.
package nsprov.validation

import data.nsprov.lib
import rego.v1

# METADATA
# title: name-environment-suffix
# description: The name ends with the environment's suffix (-dev, -staging, -prod).
deny contains violation if {
	suffix := lib.environment_config.name_suffix
	not endswith(lib.name, suffix)
	lib.is_requested
	request_checked
	violation := {
		"rule": "name-environment-suffix",
		"message": sprintf("namespace %q is in %s and must end with %q, for example %s%s", [lib.name, lib.environment, suffix, trim_suffix_any(lib.name), suffix]),
	}
}

# METADATA
# title: name-reserved
# description: The name does not use a reserved prefix or a reserved name.
deny contains violation if {
	strings.any_prefix_match(lib.name, data.config.names.reserved_prefixes)
	some reserved in data.config.names.reserved_prefixes
	startswith(lib.name, reserved)
	lib.is_requested
	request_checked
	violation := {
		"rule": "name-reserved",
		"message": sprintf("namespace %q starts with %q, which is reserved for the platform; choose another name", [lib.name, reserved]),
	}
}

deny contains violation if {
	lib.name in reserved_names
	lib.is_requested
	request_checked
	violation := {
		"rule": "name-reserved",
		"message": sprintf("namespace %q is a reserved name; choose another name", [lib.name]),
	}
}

# reserved_names are names.reserved and the namespaces nsprov runs in
# (config/install.yaml, which the chart renders from its release).
reserved_names contains name if some name in data.config.names.reserved

reserved_names contains data.config.install.namespace

reserved_names contains data.config.install.argo_namespace

# trim_suffix_any(name) strips any environment suffix, for the example in the message.
trim_suffix_any(name) := sort(trimmed)[0] if {
	trimmed := {t |
		some env in data.config.environments
		endswith(name, env.name_suffix)
		t := trim_suffix(name, env.name_suffix)
	}
	count(trimmed) > 0
} else := name
