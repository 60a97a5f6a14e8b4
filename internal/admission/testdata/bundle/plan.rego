# METADATA
# title: tiny test bundle, plan
package nsprov.plan

import data.nsprov.lib
import rego.v1

plan := {"namespace": input.request.object.metadata.name, "team": lib.team, "size": lib.size} if lib.team
