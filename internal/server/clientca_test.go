package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/nsprov/nsprov/internal/policy"
)

// ca issues certificates for the tests.
type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T) *ca {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &ca{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns the DER of a leaf certificate with usage.
func (c *ca) issue(t *testing.T, usage x509.ExtKeyUsage) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "caller"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{usage},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, &key.PublicKey, c.key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// clientCAs accepts client certificates of its CAs only, and follows the
// file: a replaced CA file is used for the next handshake, a broken one is
// ignored.
func TestClientCAs(t *testing.T) {
	first, second := newTestCA(t), newTestCA(t)
	path := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(path, first.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := newClientCAs(path, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		chain   [][]byte
		wantErr string
	}{
		{"client certificate of the CA", [][]byte{first.issue(t, x509.ExtKeyUsageClientAuth)}, ""},
		{"no certificate", nil, "requires a client certificate"},
		{"another CA", [][]byte{second.issue(t, x509.ExtKeyUsageClientAuth)}, "not signed by --client-ca-file"},
		{"serving certificate of the CA", [][]byte{first.issue(t, x509.ExtKeyUsageServerAuth)}, "not signed by --client-ca-file"},
		{"not a certificate", [][]byte{[]byte("junk")}, "parsing the client certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := c.verify(tt.chain, nil)
			if (tt.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("verify: %v, want %q", err, tt.wantErr)
			}
		})
	}

	// Rotate to the second CA (a later modification time, as a new mount).
	later := time.Now().Add(time.Minute)
	if err := os.WriteFile(path, second.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, later, later); err != nil {
		t.Fatal(err)
	}
	if err := c.verify([][]byte{second.issue(t, x509.ExtKeyUsageClientAuth)}, nil); err != nil {
		t.Errorf("after the rotation the new CA's certificate is refused: %v", err)
	}
	if err := c.verify([][]byte{first.issue(t, x509.ExtKeyUsageClientAuth)}, nil); err == nil {
		t.Error("after the rotation the old CA's certificate is accepted")
	}
	// A broken file keeps the CAs.
	if err := os.WriteFile(path, []byte("not PEM"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, later.Add(time.Minute), later.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := c.verify([][]byte{second.issue(t, x509.ExtKeyUsageClientAuth)}, nil); err != nil {
		t.Errorf("a broken CA file dropped the CAs: %v", err)
	}

	if _, err := newClientCAs(filepath.Join(t.TempDir(), "missing"), logr.Discard()); err == nil {
		t.Error("a missing CA file is accepted")
	}
	o := WebhookOptions{ClientCAFile: path, CertDir: t.TempDir(), Port: 9443, Certs: CertOptions{Mode: CertModeFiles}}
	if err := o.Validate(); err == nil || !strings.Contains(err.Error(), "--client-ca-file") {
		t.Errorf("Validate with a CA file that holds no certificate: %v, want an error naming --client-ca-file", err)
	}
}

// The last good ConfigMap's bundle encoding keeps every file.
func TestLastGoodEncoding(t *testing.T) {
	files := policy.Files{"lib.rego": []byte("package x\n"), "config/tiers.yaml": []byte("tiers: {}\n")}
	data, err := encodeFiles(files)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeFiles(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(files) || string(got["config/tiers.yaml"]) != "tiers: {}\n" || string(got["lib.rego"]) != "package x\n" {
		t.Errorf("decoded %q, want %q", got, files)
	}
	if _, err := decodeFiles([]byte("plain")); err == nil {
		t.Error("a bundle that is not gzipped decodes")
	}
}
