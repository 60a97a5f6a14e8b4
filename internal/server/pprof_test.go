package server

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestPprofIsOptIn(t *testing.T) {
	if h := metricsOptions(EndpointOptions{MetricsAddr: ":8080"}).ExtraHandlers; len(h) != 0 {
		t.Fatalf("profiling endpoints served without --enable-pprof: %v", h)
	}
	h := metricsOptions(EndpointOptions{MetricsAddr: ":8080", Pprof: true}).ExtraHandlers
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/profile", "/debug/pprof/trace", "/debug/pprof/symbol", "/debug/pprof/cmdline"} {
		if h[path] == nil {
			t.Errorf("--enable-pprof serves no %s", path)
		}
	}
	// The index lists the runtime's profiles, heap among them.
	rec := httptest.NewRecorder()
	h["/debug/pprof/"].ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/debug/pprof/", nil))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "heap") {
		t.Errorf("/debug/pprof/ answered %d:\n%s", rec.Code, rec.Body.String())
	}
}
