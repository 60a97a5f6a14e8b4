package audit

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	reportsv1alpha1 "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 600, time.UTC)

func at(i int, rule string) denial {
	return denial{
		Time: t0.Add(time.Duration(i) * time.Millisecond), UID: fmt.Sprintf("uid-%03d", i), Operation: "CREATE",
		Namespace: fmt.Sprintf("ns-%03d-dev", i), Username: "alice", Groups: []string{"team-payments", "system:authenticated"},
		Rule: rule, Message: "message of " + rule, Revision: "rev1",
	}
}

func keys(rs []reportsv1alpha1.ReportResult) []string {
	out := make([]string, len(rs))
	for i := range rs {
		out[i] = resultKey(&rs[i])
	}
	return out
}

func TestDenialResultHasEveryField(t *testing.T) {
	d := at(1, "tier-invalid")
	r := denialResult(&d)
	if r.Policy != "tier-invalid" || r.Rule != "tier-invalid" || r.Result != "fail" || r.Source != Source ||
		r.Description != "message of tier-invalid" || r.Category != CategoryAdmission {
		t.Errorf("result %+v", r)
	}
	if !resultTime(&r).Equal(d.Time) {
		t.Errorf("timestamp %v, want %v", resultTime(&r), d.Time)
	}
	if len(r.Subjects) != 1 || r.Subjects[0].Kind != "Namespace" || r.Subjects[0].APIVersion != "v1" || r.Subjects[0].Name != "ns-001-dev" {
		t.Errorf("subjects %+v", r.Subjects)
	}
	want := map[string]string{
		PropUser: "alice", PropGroups: "team-payments,system:authenticated", PropOperation: "CREATE",
		PropRequestUID: "uid-001", PropTime: d.Time.Format(time.RFC3339Nano), PropPolicyRevision: "rev1",
	}
	for k, v := range want {
		if r.Properties[k] != v {
			t.Errorf("property %s = %q, want %q", k, r.Properties[k], v)
		}
	}
	if _, ok := r.Properties["dryRun"]; ok {
		t.Error("a result records dryRun; dry-run requests are never persisted")
	}
}

func TestMergeDenials(t *testing.T) {
	var existing []reportsv1alpha1.ReportResult
	for _, i := range []int{1, 3} {
		d := at(i, "r")
		existing = append(existing, denialResult(&d))
	}
	tests := []struct {
		name                       string
		batch                      []denial
		limit                      int
		want                       []string
		added, trimmed, trimmedNew int
	}{
		{"new results in time order", []denial{at(4, "r"), at(2, "r"), at(2, "s")}, 10,
			[]string{"uid-001/r", "uid-002/r", "uid-002/s", "uid-003/r", "uid-004/r"}, 3, 0, 0},
		{"a retried result is not added twice", []denial{at(3, "r"), at(4, "r"), at(4, "r")}, 10,
			[]string{"uid-001/r", "uid-003/r", "uid-004/r"}, 1, 0, 0},
		{"the newest are kept", []denial{at(5, "r"), at(0, "r"), at(2, "r")}, 3,
			[]string{"uid-002/r", "uid-003/r", "uid-005/r"}, 3, 2, 1},
		{"a batch larger than the bound", []denial{at(10, "r"), at(11, "r"), at(12, "r"), at(13, "r")}, 2,
			[]string{"uid-012/r", "uid-013/r"}, 4, 4, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mergeDenials(slices.Clone(existing), tt.batch, tt.limit)
			if got := keys(m.results); !slices.Equal(got, tt.want) {
				t.Errorf("results %v, want %v", got, tt.want)
			}
			if m.added != tt.added || m.trimmed != tt.trimmed || m.trimmedNew != tt.trimmedNew {
				t.Errorf("added %d trimmed %d trimmedNew %d, want %d %d %d", m.added, m.trimmed, m.trimmedNew, tt.added, tt.trimmed, tt.trimmedNew)
			}
			// Every result of the batch is accounted for: persisted, dropped, or there already.
			persisted := m.added - m.trimmedNew
			if s := summarize(m.results); s.Fail != len(m.results) || s.Pass+s.Warn+s.Error+s.Skip != 0 {
				t.Errorf("summary %+v for %d fail results", s, len(m.results))
			}
			if len(m.results) != len(existing)+persisted-(m.trimmed-m.trimmedNew) {
				t.Errorf("%d results from %d existing, %d persisted, %d old ones trimmed", len(m.results), len(existing), persisted, m.trimmed-m.trimmedNew)
			}
		})
	}
}

func TestTruncate(t *testing.T) {
	if got := truncate("short", 10); got != "short" {
		t.Errorf("truncate kept %q", got)
	}
	got := truncate(strings.Repeat("é", 20), 11)
	if len(got) > 11 || !strings.HasSuffix(got, "...") || !strings.HasPrefix(got, "éééé") {
		t.Errorf("truncate gave %q (%d bytes)", got, len(got))
	}
}

func TestErrorClassification(t *testing.T) {
	noMatch := &meta.NoKindMatchError{GroupKind: schema.GroupKind{Group: "openreports.io", Kind: "ClusterReport"}}
	notFound := apierrors.NewNotFound(schema.GroupResource{Group: "openreports.io", Resource: "clusterreports"}, "x")
	if !isNoCRD(noMatch, false) || !isNoCRD(fmt.Errorf("get: %w", noMatch), false) {
		t.Error("a missing REST mapping is not recognised as a missing CRD")
	}
	if isNoCRD(notFound, false) || !isNoCRD(notFound, true) {
		t.Error("NotFound means a missing CRD only on create")
	}
	if !isTooLarge(apierrors.NewRequestEntityTooLargeError("limit is 3145728")) ||
		!isTooLarge(fmt.Errorf("etcdserver: request is too large")) || isTooLarge(notFound) {
		t.Error("too large errors are not recognised")
	}
}
