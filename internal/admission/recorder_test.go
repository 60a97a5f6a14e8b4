package admission

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/nsprov/nsprov/internal/policy"
	"github.com/nsprov/nsprov/internal/testutil"
)

func TestRecorderFields(t *testing.T) {
	store := tinyStore(t)
	rec := &recorder{}
	m := &Mutator{Policies: store, Recorder: rec}
	v := &Validator{Policies: store, Recorder: rec}
	req := createReq(t, alice, aliceGroups, "payments-dev", requested(map[string]string{"example.com/size": "large"}), nil)
	req.DryRun = ptr.To(true)
	mresp := m.Handle(context.Background(), req)
	mutated := req
	mutated.Object.Raw = testutil.ApplyPatch(t, req.Object.Raw, mresp.Patches)
	vresp := v.Handle(context.Background(), mutated)
	if !mresp.Allowed || !vresp.Allowed {
		t.Fatalf("mutate %+v validate %+v", mresp.Result, vresp.Result)
	}
	deniedReq := denyingReq(t)
	dresp := v.Handle(context.Background(), deniedReq)
	if dresp.Allowed || dresp.Result.Details == nil || len(dresp.Result.Details.Causes) != 2 {
		t.Fatalf("denial %+v, want two causes", dresp.Result)
	}

	recs := rec.all()
	if len(recs) != 3 {
		t.Fatalf("%d records, want 3", len(recs))
	}
	for _, r := range recs {
		if r.Time.IsZero() {
			t.Errorf("%s record has no time", r.Webhook)
		}
		if r.Latency < 0 {
			t.Errorf("%s record has a negative latency", r.Webhook)
		}
	}
	revision := store.Bundle().Revision
	strip := func(r Record) Record { r.Time, r.Latency = time.Time{}, 0; return r }
	causes := dresp.Result.Details.Causes
	want := []Record{
		{
			Webhook: "mutate", UID: string(req.UID), Operation: "CREATE", Namespace: "payments-dev",
			Username: alice, Groups: aliceGroups, Allowed: true, Patches: 2, DryRun: true,
			Revision: revision,
		},
		{
			Webhook: "validate", UID: string(req.UID), Operation: "CREATE", Namespace: "payments-dev",
			Username: alice, Groups: aliceGroups, Allowed: true, DryRun: true,
			Warnings: []string{"size large costs 4"}, Revision: revision,
		},
		{
			Webhook: "validate", UID: string(deniedReq.UID), Operation: "CREATE", Namespace: "shop",
			Username: bob, Groups: bobGroups, Allowed: false, DryRun: false,
			Warnings: []string{"annotation example.com/scratch is ignored"}, Revision: revision,
			Violations: []policy.Violation{
				{Rule: "name-prefix", Message: causes[0].Message},
				{Rule: "size-invalid", Message: causes[1].Message},
			},
		},
	}
	for i := range want {
		got := strip(recs[i])
		// An allowed validation may record nil or empty violations.
		if len(got.Violations) == 0 && len(want[i].Violations) == 0 {
			got.Violations, want[i].Violations = nil, nil
		}
		if !reflect.DeepEqual(got, want[i]) {
			t.Errorf("record %d\n got %+v\nwant %+v", i, got, want[i])
		}
	}
}

// A dry-run request gets the same answer and the same record, marked dry-run.
func TestHandlersDryRun(t *testing.T) {
	mutAnn, mutLabels := mutated()
	store := tinyStore(t)
	tests := []struct {
		name string
		h    admission.Handler
		req  admission.Request
	}{
		{"mutate", &Mutator{Policies: store}, createReq(t, alice, aliceGroups, "payments-dev", requested(nil), nil)},
		{"validate allowed", &Validator{Policies: store}, createReq(t, alice, aliceGroups, "payments-dev", mutAnn, mutLabels)},
		{"validate denied", &Validator{Policies: store}, denyingReq(t)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var wet, dry admission.Response
			var wetRec, dryRec *Record
			for _, dryRun := range []bool{false, true} {
				req := tt.req
				req.DryRun = ptr.To(dryRun)
				rec := &recorder{}
				switch h := tt.h.(type) {
				case *Mutator:
					h.Recorder = rec
				case *Validator:
					h.Recorder = rec
				}
				resp := tt.h.Handle(context.Background(), req)
				recs := rec.all()
				if len(recs) != 1 {
					t.Fatalf("dryRun=%v: %d records, want 1", dryRun, len(recs))
				}
				if recs[0].DryRun != dryRun {
					t.Errorf("record.DryRun = %v, want %v", recs[0].DryRun, dryRun)
				}
				if dryRun {
					dry, dryRec = resp, &recs[0]
				} else {
					wet, wetRec = resp, &recs[0]
				}
			}
			if !testutil.JSONEqual(t, dry, wet) {
				t.Errorf("dry-run response differs:\n dry %s\n wet %s", testutil.MustJSON(t, dry), testutil.MustJSON(t, wet))
			}
			if dryRec.Allowed != wetRec.Allowed || dryRec.Patches != wetRec.Patches || !reflect.DeepEqual(dryRec.Violations, wetRec.Violations) {
				t.Errorf("dry-run record %+v differs from %+v", dryRec, wetRec)
			}
		})
	}
}

func TestLogRecorder(t *testing.T) {
	tests := []struct {
		name      string
		rec       Record
		verbosity int
		want      []string // substrings of the one line logged; nil: nothing logged
	}{
		{"error", Record{Webhook: "mutate", UID: "u1", Err: errors.New("boom")}, 0, []string{`"msg"="admission request failed"`, `"error"="boom"`, `"uid"="u1"`}},
		{"denied", Record{Webhook: "validate", UID: "u2", Violations: []policy.Violation{{Rule: "team-required", Message: "add it"}}}, 0, []string{`"msg"="admission denied"`, `team-required: add it`}},
		{"allowed at verbosity 0", Record{Webhook: "validate", Allowed: true}, 0, nil},
		{"allowed at verbosity 1", Record{Webhook: "mutate", Allowed: true, Patches: 3}, 1, []string{`"msg"="admission allowed"`, `"patches"=3`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var lines []string
			log := funcr.New(func(prefix, args string) { lines = append(lines, args) }, funcr.Options{Verbosity: tt.verbosity})
			LogRecorder{}.Record(logr.NewContext(context.Background(), log), &tt.rec)
			if tt.want == nil {
				if len(lines) != 0 {
					t.Errorf("logged %q, want nothing", lines)
				}
				return
			}
			if len(lines) != 1 {
				t.Fatalf("logged %q, want one line", lines)
			}
			for _, w := range tt.want {
				if !strings.Contains(lines[0], w) {
					t.Errorf("line %s lacks %s", lines[0], w)
				}
			}
		})
	}
}
