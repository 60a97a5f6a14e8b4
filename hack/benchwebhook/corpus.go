package main

import (
	"encoding/json"
	"fmt"

	jsonpatch "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
)

const (
	mutatePath   = "/mutate-namespace"
	validatePath = "/validate-namespace"
)

// request is one AdmissionReview of the corpus and the answer nsprov must
// give it.
type request struct {
	body    []byte
	allowed bool
}

// kind is one sort of request in the corpus, in the proportions of `share`
// out of ten.
type kind struct {
	name  string
	share int
	op    admissionv1.Operation
	user  string
	// build returns the new object and, for an UPDATE, the old one.
	build func(i int) (obj, old *corev1.Namespace)
}

var (
	alice       = authenticationv1.UserInfo{Username: "alice", Groups: []string{"team-payments", "system:authenticated"}}
	bob         = authenticationv1.UserInfo{Username: "bob", Groups: []string{"team-search", "system:authenticated"}}
	corpusKinds = []kind{
		{name: "create, allowed", share: 5, op: admissionv1.Create, user: "alice", build: func(i int) (*corev1.Namespace, *corev1.Namespace) {
			return namespace(fmt.Sprintf("payments-%05d-dev", i), "development", "small", "istio"), nil
		}},
		{name: "create, denied", share: 2, op: admissionv1.Create, user: "bob", build: func(i int) (*corev1.Namespace, *corev1.Namespace) {
			ns := namespace(fmt.Sprintf("payments-%05d-prod", i), "production", "", "")
			ns.Annotations["nsprov.io/network-policy"] = "open"
			return ns, nil
		}},
		{name: "update, allowed", share: 2, op: admissionv1.Update, user: "alice", build: func(i int) (*corev1.Namespace, *corev1.Namespace) {
			name := fmt.Sprintf("payments-%05d-staging", i)
			return namespace(name, "staging", "medium", "monitoring-enhanced"), namespace(name, "staging", "small", "")
		}},
		{name: "update, denied", share: 1, op: admissionv1.Update, user: "bob", build: func(i int) (*corev1.Namespace, *corev1.Namespace) {
			name := fmt.Sprintf("payments-%05d-dev", i)
			return namespace(name, "development", "large", ""), namespace(name, "development", "small", "")
		}},
	}
)

// namespace is a requested namespace of team payments.
func namespace(name, env, tier, features string) *corev1.Namespace {
	a := map[string]string{"nsprov.io/team": "payments", "nsprov.io/environment": env}
	if tier != "" {
		a["nsprov.io/tier"] = tier
	}
	if features != "" {
		a["nsprov.io/features"] = features
	}
	return &corev1.Namespace{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: a},
	}
}

// review is the AdmissionReview the API server would send for obj.
func review(i int, k kind, obj, old *corev1.Namespace) ([]byte, error) {
	user := alice
	if k.user == "bob" {
		user = bob
	}
	req := &admissionv1.AdmissionRequest{
		UID:       types.UID(fmt.Sprintf("bench-%d", i)),
		Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Namespace"},
		Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "namespaces"},
		Name:      obj.Name,
		Operation: k.op,
		UserInfo:  user,
	}
	raw, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	req.Object = runtime.RawExtension{Raw: raw}
	if old != nil {
		if req.OldObject.Raw, err = json.Marshal(old); err != nil {
			return nil, err
		}
	}
	return json.Marshal(&admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request:  req,
	})
}

// mutationCorpus is n distinct mutating reviews, kinds interleaved.
func mutationCorpus(n int) ([][]byte, error) {
	var order []kind
	for _, k := range corpusKinds {
		for range k.share {
			order = append(order, k)
		}
	}
	out := make([][]byte, 0, n)
	for i := range n {
		k := order[i%len(order)]
		obj, old := k.build(i)
		body, err := review(i, k, obj, old)
		if err != nil {
			return nil, err
		}
		out = append(out, body)
	}
	return out, nil
}

// validationReview turns a mutating review into the validating review the
// API server sends next: the same request with nsprov's patch applied to the
// object.
func validationReview(mutating []byte, resp *admissionv1.AdmissionResponse) ([]byte, error) {
	var r admissionv1.AdmissionReview
	if err := json.Unmarshal(mutating, &r); err != nil {
		return nil, err
	}
	if len(resp.Patch) > 0 {
		patch, err := jsonpatch.DecodePatch(resp.Patch)
		if err != nil {
			return nil, fmt.Errorf("decoding the mutation's patch: %w", err)
		}
		if r.Request.Object.Raw, err = patch.Apply(r.Request.Object.Raw); err != nil {
			return nil, fmt.Errorf("applying the mutation's patch: %w", err)
		}
	}
	return json.Marshal(&r)
}
