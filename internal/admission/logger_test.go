package admission

import (
	"errors"
	"reflect"
	"testing"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

func logRequest() *admission.Request {
	return &admission.Request{AdmissionRequest: admissionv1.AdmissionRequest{
		UID: "req-1", Name: "payments-dev", Operation: admissionv1.Create,
		Resource: metav1.GroupVersionResource{Version: "v1", Resource: "namespaces"},
		UserInfo: authenticationv1.UserInfo{Username: "alice"},
	}}
}

// RequestLogger writes exactly the lines controller-runtime's
// DefaultLogConstructor would, at every level and after WithValues,
// WithName and V.
func TestRequestLoggerSameLines(t *testing.T) {
	write := func(construct func(logr.Logger, *admission.Request) logr.Logger) []string {
		var lines []string
		base := funcr.New(func(prefix, args string) { lines = append(lines, prefix+" "+args) }, funcr.Options{Verbosity: 1})
		log := construct(base.WithName("admission"), logRequest())
		log.Info("info")
		log.V(1).Info("v1", "k", 1)
		log.V(2).Info("v2 is off")
		log.Error(errors.New("boom"), "failed", "k", "v")
		log.WithValues("a", 1).WithName("sub").WithValues("b", 2).Info("nested", "c", 3)
		log.WithCallDepth(1).Info("deeper")
		return lines
	}
	got, want := write(RequestLogger), write(admission.DefaultLogConstructor)
	if len(want) != 5 {
		t.Fatalf("the default constructor wrote %d lines, want 5: %q", len(want), want)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("RequestLogger wrote\n%q\nDefaultLogConstructor\n%q", got, want)
	}
}

// countingSink counts how often values are added to it.
type countingSink struct {
	logr.LogSink
	withValues *int
}

func (s countingSink) WithValues(kv ...any) logr.LogSink {
	*s.withValues++
	return countingSink{s.LogSink.WithValues(kv...), s.withValues}
}

// A logger nobody writes with costs no WithValues on the base logger; one
// line costs one (the request's values).
func TestRequestLoggerLazy(t *testing.T) {
	n := 0
	base := logr.New(countingSink{funcr.New(func(string, string) {}, funcr.Options{}).GetSink(), &n})
	log := RequestLogger(base, logRequest())
	log.V(5).Info("received request")
	if log.V(5).Enabled() {
		t.Fatal("V(5) is enabled")
	}
	if n != 0 {
		t.Fatalf("%d WithValues calls before any line, want 0", n)
	}
	log.Info("a line")
	if n != 1 {
		t.Fatalf("%d WithValues calls for one line, want 1", n)
	}
	if RequestLogger(base, nil) != base {
		t.Error("without a request the logger is not the base logger")
	}
}
