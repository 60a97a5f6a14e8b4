package admission

import (
	"context"
	"net/http"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/nsprov/nsprov/internal/policy"
)

// Paths the webhook server serves the handlers on.
const (
	MutatePath   = "/mutate-namespace"
	ValidatePath = "/validate-namespace"
)

// Webhook names, as they appear in "admission webhook NAME denied the request".
const (
	MutatingWebhookName   = "mutate.namespaces.nsprov.io"
	ValidatingWebhookName = "validate.namespaces.nsprov.io"
)

// Record describes one admission decision for the decision log. Its
// strings and lists are bounded (see MaxRecordedViolations and
// MaxFieldBytes) before a Recorder sees it.
type Record struct {
	Time       time.Time
	Webhook    string // "mutate" or "validate"
	UID        string
	Operation  string
	Namespace  string
	Username   string
	Groups     []string
	Allowed    bool
	Violations []policy.Violation
	// OmittedViolations counts the violations beyond MaxRecordedViolations
	// that Violations does not list.
	OmittedViolations int
	Warnings          []string
	Patches           int
	DryRun            bool
	Revision          string
	Latency           time.Duration
	Err               error
	// ClientVerified is true when the caller presented a client certificate
	// that the webhook server verified (serve --client-ca-file); false when
	// client verification is off, so the request may not come from the API
	// server.
	ClientVerified bool
}

// Recorder receives every decision. It must not block.
type Recorder interface {
	Record(ctx context.Context, r *Record)
}

// LogRecorder writes each decision as one structured log line: errors and
// denials at info level, allowed requests at verbosity 1.
type LogRecorder struct{}

// Record implements Recorder.
func (LogRecorder) Record(ctx context.Context, r *Record) {
	log := logr.FromContextOrDiscard(ctx)
	if r.Err == nil && r.Allowed && !log.V(1).Enabled() {
		return // nothing is written: build nothing
	}
	kv := []any{
		"webhook", r.Webhook, "uid", r.UID, "operation", r.Operation, "namespace", r.Namespace,
		"user", r.Username, "groups", r.Groups, "allowed", r.Allowed, "dryRun", r.DryRun,
		"policyRevision", r.Revision, "latency", r.Latency.String(),
	}
	switch {
	case r.Err != nil:
		log.Error(r.Err, "admission request failed", kv...)
	case !r.Allowed:
		rules := make([]string, len(r.Violations))
		for i, v := range r.Violations {
			rules[i] = v.String()
		}
		log.Info("admission denied", append(kv, "violations", rules, "omittedViolations", r.OmittedViolations, "warnings", r.Warnings)...)
	default:
		log.V(1).Info("admission allowed", append(kv, "warnings", r.Warnings, "patches", r.Patches)...)
	}
}

// Mutator applies the policy's defaults and normalisation to Namespaces.
type Mutator struct {
	Policies *policy.Store
	Recorder Recorder
}

// Validator denies Namespaces that violate the policy and returns its warnings.
type Validator struct {
	Policies *policy.Store
	Recorder Recorder
}

var _ admission.Handler = (*Mutator)(nil)
var _ admission.Handler = (*Validator)(nil)

// Handle implements admission.Handler.
func (m *Mutator) Handle(ctx context.Context, req admission.Request) admission.Response {
	if req.Operation == "" {
		return errorResponse(errNoRequest)
	}
	if !handled(req.Operation) {
		return admission.Allowed("")
	}
	start := time.Now()
	b := m.Policies.Bundle()
	rec := newRecord(&req, "mutate", b, start)
	in, err := decode(&req)
	var resp admission.Response
	if err == nil && unchecked(in) {
		resp = admission.Allowed("")
	} else if err == nil {
		var mut *policy.Mutation
		if mut, err = b.Mutate(ctx, in); err == nil {
			patches := patch(mut, in.Object)
			resp = admission.Allowed("")
			resp.Patches = patches
			rec.Patches = len(patches)
		}
	}
	if err != nil {
		resp = errorResponse(err)
	}
	record(ctx, m.Recorder, rec, resp, err, start)
	return resp
}

// Handle implements admission.Handler.
func (v *Validator) Handle(ctx context.Context, req admission.Request) admission.Response {
	if req.Operation == "" {
		return errorResponse(errNoRequest)
	}
	if !handled(req.Operation) {
		return admission.Allowed("")
	}
	start := time.Now()
	b := v.Policies.Bundle()
	rec := newRecord(&req, "validate", b, start)
	in, err := decode(&req)
	var resp admission.Response
	if err == nil && unchecked(in) {
		resp = admission.Allowed("")
	} else if err == nil {
		var res *policy.Validation
		if res, err = b.Validate(ctx, in); err == nil {
			rec.Violations, rec.Warnings = res.Violations, res.Warnings
			resp = validationResponse(in.Object.Name, res)
		}
	}
	if err != nil {
		resp = errorResponse(err)
	}
	record(ctx, v.Recorder, rec, resp, err, start)
	return resp
}

func newRecord(req *admission.Request, webhook string, b *policy.Bundle, start time.Time) *Record {
	return &Record{
		Time:      start,
		Webhook:   webhook,
		UID:       string(req.UID),
		Operation: string(req.Operation),
		Namespace: req.Name,
		Username:  req.UserInfo.Username,
		Groups:    req.UserInfo.Groups,
		DryRun:    req.DryRun != nil && *req.DryRun,
		Revision:  b.Revision,
	}
}

func record(ctx context.Context, r Recorder, rec *Record, resp admission.Response, err error, start time.Time) {
	if r == nil {
		return
	}
	rec.Allowed = resp.Allowed
	rec.Err = err
	rec.Latency = time.Since(start)
	BoundRecord(rec)
	r.Record(ctx, rec)
}

// validationResponse denies with the violations, or allows; warnings go back
// to the client either way. The answer is bounded: the message lists at
// most MaxListedViolations violations within MaxMessageBytes and says how
// many more there are; the causes list the same ones.
func validationResponse(name string, res *policy.Validation) admission.Response {
	warnings := truncateAll(res.Warnings, MaxWarnings, MaxWarningBytes)
	if res.Allowed() {
		resp := admission.Allowed("")
		resp.Warnings = warnings
		return resp
	}
	causes := make([]metav1.StatusCause, min(len(res.Violations), MaxListedViolations))
	for i, v := range res.Violations[:len(causes)] {
		causes[i] = metav1.StatusCause{Type: metav1.CauseType(Truncate(v.Rule, MaxFieldBytes)), Message: Truncate(v.Message, MaxViolationBytes)}
	}
	resp := admission.Denied(boundedMessage(res.Violations))
	resp.Result.Code = http.StatusForbidden
	resp.Result.Details = &metav1.StatusDetails{Name: Truncate(name, MaxFieldBytes), Kind: "namespaces", Causes: causes}
	resp.Warnings = warnings
	return resp
}
