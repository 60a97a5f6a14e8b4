# METADATA
# title: tiny test bundle, validation
package nsprov.validation

import data.nsprov.lib
import rego.v1

# METADATA
# title: team-required
deny contains {"rule": "team-required", "message": "add the annotation example.com/team"} if not lib.team

# METADATA
# title: name-prefix
deny contains violation if {
	lib.team
	not startswith(input.request.object.metadata.name, lib.team)
	violation := {"rule": "name-prefix", "message": sprintf("the name must start with the team %q", [lib.team])}
}

# METADATA
# title: size-invalid
deny contains violation if {
	not data.config.sizes[lib.size]
	violation := {"rule": "size-invalid", "message": sprintf("size %q is not in the catalogue", [lib.size])}
}

# METADATA
# title: value-empty
# description: one violation per empty example.com/ annotation
deny contains violation if {
	some key, value in lib.annotations
	startswith(key, "example.com/")
	value == ""
	violation := {"rule": "value-empty", "message": sprintf("annotation %s is empty", [key])}
}

# to_number fails on a value that is not a number (strict builtin errors).
deny contains {"rule": "fail", "message": sprintf("%v", [to_number(lib.annotations["example.com/fail"])])} if lib.failing

warn contains sprintf("size %s costs %d", [lib.size, data.config.sizes[lib.size].cost]) if {
	data.config.sizes[lib.size].cost > 1
}

warn contains "annotation example.com/scratch is ignored" if lib.annotations["example.com/scratch"]
