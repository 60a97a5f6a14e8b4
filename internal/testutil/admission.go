package testutil

import (
	"encoding/json"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// NamespaceGVK is the kind of a core/v1 Namespace in an admission request.
var NamespaceGVK = metav1.GroupVersionKind{Group: "", Version: "v1", Kind: "Namespace"}

// AdmissionRequest builds an AdmissionRequest for a Namespace as the API
// server does, not on dry-run. obj and old are the raw objects (see
// NamespaceJSON); nil leaves the field empty. The UID is derived from the
// operation and the name.
func AdmissionRequest(op admissionv1.Operation, name, user string, groups []string, obj, old []byte) admission.Request {
	req := admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID:         types.UID("uid-" + strings.ToLower(string(op)) + "-" + name),
		Kind:        NamespaceGVK,
		Resource:    metav1.GroupVersionResource{Version: "v1", Resource: "namespaces"},
		RequestKind: &NamespaceGVK,
		Name:        name,
		Operation:   op,
		UserInfo:    authenticationv1.UserInfo{Username: user, Groups: groups},
		DryRun:      ptr.To(false),
	}}
	if obj != nil {
		req.Object = runtime.RawExtension{Raw: obj}
	}
	if old != nil {
		req.OldObject = runtime.RawExtension{Raw: old}
	}
	return req
}

// Review wraps a request in the body of an AdmissionReview, as the API
// server posts it to a webhook.
func Review(tb testing.TB, req admission.Request) []byte {
	tb.Helper()
	ar := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request:  &req.AdmissionRequest,
	}
	return []byte(MustJSON(tb, ar))
}

// ApplyPatch applies JSON patch operations (anything that marshals to an RFC
// 6902 patch) to raw as the API server does and returns the patched JSON.
func ApplyPatch(tb testing.TB, raw []byte, ops any) []byte {
	tb.Helper()
	opsJSON := MustJSON(tb, ops)
	p, err := jsonpatch.DecodePatch([]byte(opsJSON))
	if err != nil {
		tb.Fatalf("decoding patch %s: %v", opsJSON, err)
	}
	out, err := p.Apply(raw)
	if err != nil {
		tb.Fatalf("applying patch %s to %s: %v", opsJSON, raw, err)
	}
	return out
}

// PatchedNamespace is ApplyPatch decoded as a Namespace.
func PatchedNamespace(tb testing.TB, raw []byte, ops any) *corev1.Namespace {
	tb.Helper()
	ns := &corev1.Namespace{}
	if err := json.Unmarshal(ApplyPatch(tb, raw, ops), ns); err != nil {
		tb.Fatal(err)
	}
	return ns
}
