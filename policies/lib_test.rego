package nsprov.lib_test

import data.nsprov.lib
import rego.v1

test_features_normalised if {
	lib.features_of({"metadata": {"annotations": {"nsprov.io/features": " Istio, istio,,monitoring-enhanced "}}}) == ["istio", "monitoring-enhanced"]
}
