package server

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/nsprov/nsprov/internal/benchcpu"

	admissionv1 "k8s.io/api/admission/v1"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/nsprov/nsprov/internal/admission"
	"github.com/nsprov/nsprov/internal/audit"
	"github.com/nsprov/nsprov/internal/policy"
	"github.com/nsprov/nsprov/internal/testutil"
)

// setBenchLogger gives controller-runtime serve's logger (JSON, verbosity
// 0), writing nowhere: the per-request logger is built on it.
var setBenchLogger = sync.OnceFunc(func() { logf.SetLogger((&LoggingOptions{Format: "json"}).Logger(io.Discard)) })

// BenchmarkWebhooks measures one webhook request as serve handles it after
// TLS: controller-runtime decoding the AdmissionReview, nsprov's handler
// with the embedded policy, the audit sink with a decision log, the
// per-request logger on serve's logger, and the answer. "cached" answers
// from the decision cache, so what it measures is nearly all outside policy
// evaluation.
func BenchmarkWebhooks(b *testing.B) {
	setBenchLogger()
	obj := testutil.NamespaceJSON(b, "payments-dev", map[string]string{
		"nsprov.io/team": "payments", "nsprov.io/environment": "development", "nsprov.io/features": "istio, Monitoring-Enhanced",
	}, map[string]string{"kubernetes.io/metadata.name": "payments-dev"})
	body := testutil.Review(b, testutil.AdmissionRequest(admissionv1.Create, "payments-dev", "alice", []string{"team-payments", "system:authenticated"}, obj, nil))
	for _, mode := range []struct {
		name  string
		cache int
	}{{"evaluated", 0}, {"cached", policy.DefaultDecisionCacheSize}} {
		bundle, err := policy.LoadEmbedded(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		bundle.SetDecisionCacheSize(mode.cache)
		server := webhook.NewServer(webhook.Options{})
		registerWebhooks(server, policy.StaticStore(bundle), audit.NewSink(audit.Options{DecisionLog: io.Discard}), false)
		mux := server.WebhookMux()
		for _, path := range []string{admission.MutatePath, admission.ValidatePath} {
			b.Run(mode.name+path, func(b *testing.B) {
				post := func() {
					w := httptest.NewRecorder()
					r := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
					r.Header.Set("Content-Type", "application/json")
					mux.ServeHTTP(w, r)
					if w.Code != http.StatusOK || !bytes.Contains(w.Body.Bytes(), []byte(`"allowed":true`)) {
						b.Fatalf("%d %s", w.Code, w.Body)
					}
				}
				post()
				b.ReportAllocs()
				b.ResetTimer()
				cpu := benchcpu.Now()
				for b.Loop() {
					post()
				}
				benchcpu.Report(b, cpu)
			})
		}
	}
}
