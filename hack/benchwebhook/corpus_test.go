package main

import (
	"encoding/json"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
)

func TestCorpusIsDistinctAndMixed(t *testing.T) {
	bodies, err := mutationCorpus(100)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	ops := map[admissionv1.Operation]int{}
	users := map[string]int{}
	for _, b := range bodies {
		if seen[string(b)] {
			t.Fatalf("request repeated in the corpus: %s", b)
		}
		seen[string(b)] = true
		var r admissionv1.AdmissionReview
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatal(err)
		}
		ops[r.Request.Operation]++
		users[r.Request.UserInfo.Username]++
		if (r.Request.Operation == admissionv1.Update) != (len(r.Request.OldObject.Raw) > 0) {
			t.Errorf("%s request %s: old object %q", r.Request.Operation, r.Request.Name, r.Request.OldObject.Raw)
		}
	}
	// Out of ten: 7 CREATE, 3 UPDATE; alice 7, bob 3.
	if ops[admissionv1.Create] != 70 || ops[admissionv1.Update] != 30 || users["alice"] != 70 || users["bob"] != 30 {
		t.Errorf("corpus mix: operations %v, users %v", ops, users)
	}
}

func TestValidationReviewAppliesThePatch(t *testing.T) {
	bodies, err := mutationCorpus(1)
	if err != nil {
		t.Fatal(err)
	}
	patch := `[{"op":"add","path":"/metadata/labels","value":{"nsprov.io/team":"payments"}}]`
	vb, err := validationReview(bodies[0], &admissionv1.AdmissionResponse{Allowed: true, Patch: []byte(patch)})
	if err != nil {
		t.Fatal(err)
	}
	var r admissionv1.AdmissionReview
	if err := json.Unmarshal(vb, &r); err != nil {
		t.Fatal(err)
	}
	var ns corev1.Namespace
	if err := json.Unmarshal(r.Request.Object.Raw, &ns); err != nil {
		t.Fatal(err)
	}
	if ns.Labels["nsprov.io/team"] != "payments" || ns.Annotations["nsprov.io/team"] != "payments" {
		t.Errorf("validating review's object: labels %v, annotations %v", ns.Labels, ns.Annotations)
	}
	if _, err := validationReview(bodies[0], &admissionv1.AdmissionResponse{Patch: []byte(`[{"op":"nope"}]`)}); err == nil {
		t.Error("a patch that cannot apply gave no error")
	}
}

func TestMedian(t *testing.T) {
	if got := median([]float64{5, 1, 3}); got != 3 {
		t.Errorf("median = %v, want 3", got)
	}
}
