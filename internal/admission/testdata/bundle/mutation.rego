# METADATA
# title: tiny test bundle, mutation
# description: >-
#   A namespace with an example.com/team annotation gets the requester in
#   example.com/requested-by, a default example.com/size, a label that mirrors
#   its team, and loses example.com/scratch. Others are left alone.
package nsprov.mutation

import data.nsprov.lib
import rego.v1

# METADATA
# title: Mutation result
result := {"annotations": annotations, "labels": {"example.com/team": lib.team}} if {
	lib.team
} else := {"annotations": {}, "labels": {}}

# This definition conflicts with the one above: the evaluation fails.
result := {"annotations": {"example.com/fail": "conflict"}, "labels": {}} if lib.failing

annotations := {
	"example.com/requested-by": input.request.userInfo.username,
	"example.com/size": lib.size,
	"example.com/scratch": null,
}
