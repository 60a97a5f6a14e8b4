package policy

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/nsprov/nsprov/internal/testutil"
)

// FuzzCompiledMatchesTopdown is the differential test of
// TestCompiledBundleMatchesTopdown on fuzzed requests: the compiled
// evaluator and OPA's topdown decide the same mutation, validation and plan
// for any requester, name, annotations and labels, or both fail. Its seeds
// are the requests of requestCorpus, which reach every rule.
func FuzzCompiledMatchesTopdown(f *testing.F) {
	ctx := context.Background()
	fast, err := LoadEmbedded(ctx)
	if err != nil {
		f.Fatal(err)
	}
	if fast.Evaluator != EvaluatorCompiled {
		f.Fatalf("the embedded bundle is evaluated by %q, want %q", fast.Evaluator, EvaluatorCompiled)
	}
	reference, err := LoadEmbedded(ctx)
	if err != nil {
		f.Fatal(err)
	}
	if err := reference.UseEvaluator(EvaluatorTopdown); err != nil {
		f.Fatal(err)
	}
	fast.SetDecisionCacheSize(0)
	reference.SetDecisionCacheSize(0)

	format := func(m map[string]string) string {
		var lines []string
		for k, v := range m {
			lines = append(lines, k+"="+v)
		}
		return strings.Join(lines, "\n")
	}
	for _, r := range requestCorpus() {
		old := ""
		if r.OldObject != nil {
			old = "\x00" + format(r.OldObject.Annotations) + "\x00" + format(r.OldObject.Labels)
		}
		f.Add(r.Username, strings.Join(r.Groups, ","), r.Object.Name, format(r.Object.Annotations), format(r.Object.Labels), old)
	}
	parse := func(s string) map[string]string {
		if s == "" {
			return nil
		}
		out := map[string]string{}
		for line := range strings.SplitSeq(s, "\n") {
			k, v, _ := strings.Cut(line, "=")
			out[k] = v
		}
		return out
	}
	f.Fuzz(func(t *testing.T, user, groups, name, annotations, labels, old string) {
		req := &Request{UID: "u", Operation: "CREATE", Username: user, Object: testutil.Namespace(name, parse(annotations), parse(labels))}
		if groups != "" {
			req.Groups = strings.Split(groups, ",")
		}
		// An old object, "\x00annotations\x00labels", makes it an UPDATE.
		if rest, ok := strings.CutPrefix(old, "\x00"); ok {
			a, l, _ := strings.Cut(rest, "\x00")
			req.Operation = "UPDATE"
			req.OldObject = testutil.Namespace(name, parse(a), parse(l))
		}
		wantD, wantErr := decide(ctx, reference, req)
		gotD, gotErr := decide(ctx, fast, req)
		if (wantErr != nil) != (gotErr != nil) {
			t.Fatalf("topdown error %v, compiled error %v", wantErr, gotErr)
		}
		if wantErr != nil {
			return
		}
		if !reflect.DeepEqual(gotD, wantD) {
			g, _ := json.MarshalIndent(gotD, "", "  ")
			w, _ := json.MarshalIndent(wantD, "", "  ")
			t.Fatalf("decisions differ:\ncompiled %s\ntopdown  %s", g, w)
		}
		wantV, wantErr := reference.Validate(ctx, req)
		gotV, gotErr := fast.Validate(ctx, req)
		if (wantErr != nil) != (gotErr != nil) {
			t.Fatalf("validation: topdown error %v, compiled error %v", wantErr, gotErr)
		}
		if wantErr == nil && !reflect.DeepEqual(gotV, wantV) {
			t.Fatalf("validation differs:\ncompiled %+v\ntopdown  %+v", gotV, wantV)
		}
	})
}
