package testutil

import (
	"encoding/json"
	"maps"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Namespace is a Namespace with copies of the given annotations and labels
// (nil stays nil), as a policy input or a client builds it.
func Namespace(name string, annotations, labels map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:        name,
		Annotations: maps.Clone(annotations),
		Labels:      maps.Clone(labels),
	}}
}

// NamespaceJSON is a Namespace as the API server sends it in an admission
// request: with its type, the kubernetes finalizer and the Active phase.
func NamespaceJSON(tb testing.TB, name string, annotations, labels map[string]string) []byte {
	tb.Helper()
	ns := Namespace(name, annotations, labels)
	ns.TypeMeta = metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"}
	ns.Spec.Finalizers = []corev1.FinalizerName{corev1.FinalizerKubernetes}
	ns.Status.Phase = corev1.NamespaceActive
	raw, err := json.Marshal(ns)
	if err != nil {
		tb.Fatal(err)
	}
	return raw
}
