package chart

import (
	"context"
	"strings"
	"testing"

	"github.com/nsprov/nsprov/test/envtest/chartrender"
)

// TestLint runs Helm's linter on the default values and on every
// ci/*-values.yaml.
func TestLint(t *testing.T) {
	for name, values := range valueSets(t) {
		t.Run(name, func(t *testing.T) {
			if err := chartrender.Lint(values, releaseNamespace); err != nil {
				t.Errorf("helm lint: %v", err)
			}
		})
	}
}

// TestSchemaRejects: values.schema.json refuses misspelt keys and wrong types
// before anything renders.
func TestSchemaRejects(t *testing.T) {
	tests := []struct {
		name   string
		values map[string]any
		want   string
	}{
		{"misspelt top-level key", map[string]any{"replicas": 3}, "replicas"},
		{"misspelt nested key", map[string]any{"webhook": map[string]any{"failurPolicy": "Ignore"}}, "failurPolicy"},
		{"failure policy not an enum value", map[string]any{"webhook": map[string]any{"failurePolicy": "Retry"}}, "failurePolicy"},
		{"replicas a string", map[string]any{"replicaCount": "two"}, "replicaCount"},
		{"timeout too long", map[string]any{"webhook": map[string]any{"timeoutSeconds": 31}}, "timeoutSeconds"},
		{"cert-manager enabled a string", map[string]any{"certManager": map[string]any{"enabled": "yes"}}, "enabled"},
		{"validity not a duration", map[string]any{"selfManaged": map[string]any{"validity": "90 days"}}, "validity"},
		{"exempt groups not a list", map[string]any{"webhook": map[string]any{"exemptGroups": "platform-admins"}}, "exemptGroups"},
		{"policy evaluator not an enum value", map[string]any{"policy": map[string]any{"evaluator": "wasm"}}, "evaluator"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := chartrender.Render(tc.values, releaseNamespace)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("render error = %v, want a schema error naming %q", err, tc.want)
			}
		})
	}
}

// TestRenderedObjectsOnAPIServer creates every object the chart renders,
// for the default values and each ci/*-values.yaml, on the API server, which
// validates them (CRD schemas and CEL match conditions included). Monitoring
// objects are checked in TestMonitoring: their CRDs are in no pinned module.
func TestRenderedObjectsOnAPIServer(t *testing.T) {
	for name, values := range valueSets(t) {
		t.Run(name, func(t *testing.T) {
			objs := render(t, values)
			if len(objs) < 15 {
				t.Fatalf("rendered only %d objects", len(objs))
			}
			// Created for real, one value set after the other (server-side
			// apply updates what an earlier set created).
			install(context.Background(), t, objs, false)
		})
	}
}
