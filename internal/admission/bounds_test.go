package admission

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/nsprov/nsprov/internal/policy"
)

// manyViolations is a CREATE by a requester with a 100 KiB name and 1,000
// groups, of a namespace with 3,000 empty example.com/ annotations whose keys
// are 2 KiB long: the tiny bundle denies it with 3,000 violations of about
// 2 KiB each, 6 MiB in all.
func manyViolations(t *testing.T) (req admission.Request, violations int) {
	annotations := requested(nil)
	const n = 3000
	for i := range n {
		annotations[fmt.Sprintf("example.com/%04d-%s", i, strings.Repeat("k", 2048))] = ""
	}
	groups := make([]string, 1000)
	for i := range groups {
		groups[i] = fmt.Sprintf("group-%04d-%s", i, strings.Repeat("g", 200))
	}
	return createReq(t, strings.Repeat("u", 100<<10), groups, "payments-dev", annotations, nil), n
}

func TestDenialIsBounded(t *testing.T) {
	req, n := manyViolations(t)
	rec := &recorder{}
	v := &Validator{Policies: tinyStore(t), Recorder: rec}
	resp := v.Handle(context.Background(), req)
	if resp.Allowed || resp.Result == nil {
		t.Fatalf("want a denial, got %+v", resp.Result)
	}
	msg := resp.Result.Message
	t.Logf("denial message: %d bytes, %d causes", len(msg), len(resp.Result.Details.Causes))
	if len(msg) > MaxMessageBytes {
		t.Errorf("the denial message is %d bytes, more than %d", len(msg), MaxMessageBytes)
	}
	if !utf8.ValidString(msg) {
		t.Errorf("the bounded message is not valid UTF-8")
	}
	if !strings.HasPrefix(msg, "value-empty: annotation example.com/") {
		t.Errorf("the message does not start with the first violation: %.120q", msg)
	}
	listed := strings.Count(msg, "value-empty: ")
	if want := fmt.Sprintf("and %d more", n-listed); !strings.HasSuffix(msg, want) {
		t.Errorf("the message does not end with %q: ...%q", want, msg[max(0, len(msg)-80):])
	}
	if c := len(resp.Result.Details.Causes); c > MaxListedViolations {
		t.Errorf("%d causes, more than %d", c, MaxListedViolations)
	}
	for _, c := range resp.Result.Details.Causes {
		if len(c.Message) > MaxViolationBytes {
			t.Errorf("a cause message is %d bytes, more than %d", len(c.Message), MaxViolationBytes)
			break
		}
	}

	recs := rec.all()
	if len(recs) != 1 {
		t.Fatalf("%d records, want 1", len(recs))
	}
	r := recs[0]
	if len(r.Violations) > MaxRecordedViolations || r.OmittedViolations != n-len(r.Violations) {
		t.Errorf("the record keeps %d violations and omits %d, want at most %d kept and the rest of %d counted", len(r.Violations), r.OmittedViolations, MaxRecordedViolations, n)
	}
	if got := recordBytes(&r); got > 256<<10 {
		t.Errorf("the record holds %d bytes of strings, more than 256 KiB", got)
	}
	if len(r.Username) > MaxFieldBytes || len(r.Groups) > MaxGroups {
		t.Errorf("the record keeps a %d-byte username and %d groups", len(r.Username), len(r.Groups))
	}
}

// recordBytes is the length of every string of a record summed.
func recordBytes(r *Record) int {
	n := len(r.UID) + len(r.Operation) + len(r.Namespace) + len(r.Username) + len(r.Revision)
	for _, g := range r.Groups {
		n += len(g)
	}
	for _, v := range r.Violations {
		n += len(v.Rule) + len(v.Message)
	}
	for _, w := range r.Warnings {
		n += len(w)
	}
	return n
}

func TestBoundedMessage(t *testing.T) {
	vs := func(n, size int) []policy.Violation {
		out := make([]policy.Violation, n)
		for i := range out {
			out[i] = policy.Violation{Rule: "r", Message: fmt.Sprintf("%d", i) + strings.Repeat("é", size)}
		}
		return out
	}
	for _, tc := range []struct {
		name string
		vs   []policy.Violation
		want string // the exact message, when short
	}{
		{"one", []policy.Violation{{Rule: "a", Message: "x"}}, "a: x"},
		{"two", []policy.Violation{{Rule: "a", Message: "x"}, {Rule: "b", Message: "y"}}, "a: x; b: y"},
		{"many short", vs(1000, 1), ""},
		{"few long", vs(3, 10000), ""},
		{"many long", vs(1000, 1000), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg := boundedMessage(tc.vs)
			if tc.want != "" && msg != tc.want {
				t.Errorf("message %q, want %q", msg, tc.want)
			}
			if len(msg) > MaxMessageBytes || !utf8.ValidString(msg) {
				t.Errorf("message of %d bytes (valid UTF-8: %v)", len(msg), utf8.ValidString(msg))
			}
			if tc.want != "" {
				return
			}
			listed := strings.Count(msg, "r: ")
			if listed < len(tc.vs) && !strings.HasSuffix(msg, fmt.Sprintf("; and %d more", len(tc.vs)-listed)) {
				t.Errorf("%d of %d listed without saying how many more: ...%q", listed, len(tc.vs), msg[max(0, len(msg)-40):])
			}
			if listed == 0 {
				t.Errorf("no violation listed")
			}
		})
	}
}

// An error that quotes the request (here its kind) is bounded too.
func TestErrorMessageIsBounded(t *testing.T) {
	req := createReq(t, alice, aliceGroups, "payments-dev", requested(nil), nil)
	req.Kind.Kind = strings.Repeat("K", 1<<20)
	for _, h := range handlers(tinyStore(t)) {
		resp := h.Handle(context.Background(), req)
		if resp.Allowed || resp.Result == nil || resp.Result.Code != 400 {
			t.Fatalf("%s: want a 400, got %+v", h.name, resp.Result)
		}
		if n := len(resp.Result.Message); n > MaxMessageBytes {
			t.Errorf("%s: an error message of %d bytes, more than %d", h.name, n, MaxMessageBytes)
		}
	}
}
