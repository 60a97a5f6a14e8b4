package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/nsprov/nsprov/internal/admission"
)

// A record says the caller was verified only when the server verifies
// client certificates and the caller presented one.
func TestClientVerifiedMarksRecords(t *testing.T) {
	withCert := httptest.NewRequest("POST", "/validate-namespace", nil)
	withCert.TLS = &tls.ConnectionState{PeerCertificates: []*x509.Certificate{{}}}
	noCert := httptest.NewRequest("POST", "/validate-namespace", nil)
	noCert.TLS = &tls.ConnectionState{}
	plain := httptest.NewRequest("POST", "/validate-namespace", nil)
	tests := []struct {
		name      string
		verifying bool
		req       *http.Request
		want      bool
	}{
		{"verifying, certificate", true, withCert, true},
		{"verifying, no certificate", true, noCert, false},
		{"verifying, no TLS", true, plain, false},
		{"not verifying, certificate", false, withCert, false},
		{"not verifying, no TLS", false, plain, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := withClientVerified(tt.verifying)(context.Background(), tt.req)
			rec := &memRecorder{}
			r := &admission.Record{ClientVerified: !tt.want}
			markingRecorder{next: rec}.Record(ctx, r)
			if len(rec.records) != 1 || rec.records[0].ClientVerified != tt.want {
				t.Fatalf("records %+v, want one with ClientVerified %v", rec.records, tt.want)
			}
		})
	}
}
