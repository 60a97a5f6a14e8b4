package admission

import (
	"fmt"
	"net/http"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	sigsjson "sigs.k8s.io/json"

	"github.com/nsprov/nsprov/internal/policy"
)

// leanNamespace decodes only what the policy reads, so that large fields such
// as managedFields are skipped instead of allocated.
type leanNamespace struct {
	Metadata struct {
		Name              string            `json:"name"`
		UID               types.UID         `json:"uid"`
		Labels            map[string]string `json:"labels"`
		Annotations       map[string]string `json:"annotations"`
		DeletionTimestamp *metav1.Time      `json:"deletionTimestamp"`
	} `json:"metadata"`
	Status struct {
		Phase corev1.NamespacePhase `json:"phase"`
	} `json:"status"`
}

// badRequest is a request nsprov cannot evaluate; it answers 400.
type badRequest struct{ msg string }

func (e *badRequest) Error() string { return e.msg }

// errNoRequest answers an AdmissionReview without a request (or with no operation).
var errNoRequest = badf("the AdmissionReview has no request with an operation; send a review as the API server does, with request.operation CREATE or UPDATE")

func badf(format string, args ...any) error { return &badRequest{msg: fmt.Sprintf(format, args...)} }

// handled reports whether nsprov evaluates this operation; others pass.
func handled(op admissionv1.Operation) bool {
	return op == admissionv1.Create || op == admissionv1.Update
}

// decode turns an admission request into the policy's input. Errors are
// badRequest errors that say what is wrong.
func decode(req *admission.Request) (*policy.Request, error) {
	if req.Kind.Group != "" || req.Kind.Kind != "Namespace" {
		return nil, badf("nsprov evaluates core/v1 Namespaces, but this request is for %q; check the rules of the webhook configuration", req.Kind.String())
	}
	obj, err := decodeNamespace(req.Object.Raw, "object")
	if err != nil {
		return nil, err
	}
	r := &policy.Request{
		UID:       string(req.UID),
		Operation: string(req.Operation),
		Username:  req.UserInfo.Username,
		Groups:    req.UserInfo.Groups,
		DryRun:    req.DryRun != nil && *req.DryRun,
		Object:    obj,
	}
	if req.Operation == admissionv1.Update {
		if r.OldObject, err = decodeNamespace(req.OldObject.Raw, "oldObject"); err != nil {
			return nil, err
		}
	}
	return r, nil
}

func decodeNamespace(raw []byte, field string) (*corev1.Namespace, error) {
	if len(raw) == 0 {
		return nil, badf("the admission request has no %s; the API server sends one for CREATE and UPDATE", field)
	}
	if ns, ok := scanNamespace(raw); ok {
		return ns, nil
	}
	return decodeNamespaceReflect(raw, field)
}

// decodeNamespaceReflect is decodeNamespace by reflection: slower, but it
// decides every input scanNamespace leaves to it and says what is wrong.
func decodeNamespaceReflect(raw []byte, field string) (*corev1.Namespace, error) {
	// Field names match case-sensitively, as the API server decodes them:
	// encoding/json would also take "Metadata" or "ANNOTATIONS", so nsprov
	// would decide on fields the API server ignores, and patch paths that
	// do not exist.
	var lean leanNamespace
	if err := sigsjson.UnmarshalCaseSensitivePreserveInts(raw, &lean); err != nil {
		return nil, badf("request.%s is not a Namespace: %v", field, err)
	}
	// The name can be empty: the mutating webhook sees a generateName request
	// before the API server generates the name.
	ns := &corev1.Namespace{}
	ns.Name = lean.Metadata.Name
	ns.UID = lean.Metadata.UID
	ns.Labels = lean.Metadata.Labels
	ns.Annotations = lean.Metadata.Annotations
	ns.DeletionTimestamp = lean.Metadata.DeletionTimestamp
	ns.Status.Phase = lean.Status.Phase
	return ns, nil
}

// errorResponse answers 400 for a bad request and 500 for anything else,
// with the error's text cut at MaxMessageBytes (it can quote the request).
func errorResponse(err error) admission.Response {
	code := int32(http.StatusInternalServerError)
	if _, ok := err.(*badRequest); ok {
		code = http.StatusBadRequest
	}
	resp := admission.Errored(code, err)
	resp.Result.Message = Truncate(resp.Result.Message, MaxMessageBytes)
	return resp
}
