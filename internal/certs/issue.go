package certs

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"time"
)

// Keys of the Secret.
const (
	// CertKey and KeyKey hold the serving certificate and its private key.
	CertKey = "tls.crt"
	KeyKey  = "tls.key"
	// CAKey holds the CA bundle the webhook configurations trust: the
	// current CA first, then earlier CAs that have not expired.
	CAKey = "ca.crt"
	// CAPrivateKeyKey holds the current CA's private key.
	CAPrivateKeyKey = "ca.key"
)

// material is the parsed content of the Secret.
type material struct {
	cas    []*x509.Certificate // current first
	caKey  crypto.Signer       // the current CA's key; nil when absent (an adopted Secret)
	leaf   *x509.Certificate
	bundle []byte
}

// renewAt is two thirds into a certificate's lifetime.
func renewAt(c *x509.Certificate) time.Time {
	return c.NotBefore.Add(c.NotAfter.Sub(c.NotBefore) * 2 / 3)
}

// parse reads the Secret's data; an error says what is missing or broken.
func parse(data map[string][]byte) (*material, error) {
	if len(data[CertKey]) == 0 || len(data[KeyKey]) == 0 || len(data[CAKey]) == 0 {
		return nil, errors.New("the secret lacks tls.crt, tls.key or ca.crt")
	}
	pair, err := tls.X509KeyPair(data[CertKey], data[KeyKey])
	if err != nil {
		return nil, fmt.Errorf("tls.crt and tls.key: %w", err)
	}
	m := &material{leaf: pair.Leaf, bundle: data[CAKey]}
	rest := data[CAKey]
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("ca.crt: %w", err)
		}
		m.cas = append(m.cas, c)
	}
	if len(m.cas) == 0 {
		return nil, errors.New("ca.crt holds no certificate")
	}
	if len(data[CAPrivateKeyKey]) > 0 {
		b, _ := pem.Decode(data[CAPrivateKeyKey])
		if b == nil {
			return nil, errors.New("ca.key is not PEM")
		}
		k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("ca.key: %w", err)
		}
		signer, ok := k.(crypto.Signer)
		if !ok || !publicKeyEqual(signer.Public(), m.cas[0].PublicKey) {
			return nil, errors.New("ca.key does not belong to the first certificate of ca.crt")
		}
		m.caKey = signer
	}
	return m, nil
}

func publicKeyEqual(a, b crypto.PublicKey) bool {
	e, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && e.Equal(b)
}

// problem says why m cannot keep serving hosts at now, or "" when it can.
func (m *material) problem(hosts []string, now time.Time) string {
	pool := x509.NewCertPool()
	for _, c := range m.cas {
		pool.AddCert(c)
	}
	if _, err := m.leaf.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
		return fmt.Sprintf("the serving certificate does not verify against ca.crt: %v", err)
	}
	for _, h := range hosts {
		if err := m.leaf.VerifyHostname(h); err != nil {
			return fmt.Sprintf("the serving certificate is not valid for %s", h)
		}
	}
	if !now.Before(renewAt(m.leaf)) {
		return fmt.Sprintf("the serving certificate is two thirds through its lifetime (expires %s)", m.leaf.NotAfter.Format(time.RFC3339))
	}
	if m.caKey != nil && m.caDue(now) {
		return fmt.Sprintf("the CA is two thirds through its lifetime (expires %s)", m.cas[0].NotAfter.Format(time.RFC3339))
	}
	return ""
}

// caDue says whether the current CA must be replaced before issuing.
func (m *material) caDue(now time.Time) bool {
	return m == nil || m.caKey == nil || !now.Before(renewAt(m.cas[0]))
}

// issue returns the Secret data for a new serving certificate for hosts,
// signed by the current CA, or by a new CA when the current one is due (the
// earlier CAs that have not expired stay in the bundle).
func issue(old *material, hosts []string, validity, caValidity time.Duration, now time.Time) (map[string][]byte, error) {
	var (
		ca    *x509.Certificate
		caKey crypto.Signer
	)
	if old.caDue(now) {
		var err error
		if ca, caKey, err = newCA(caValidity, now); err != nil {
			return nil, err
		}
	} else {
		ca, caKey = old.cas[0], old.caKey
	}
	cas := []*x509.Certificate{ca}
	if old != nil {
		for _, c := range old.cas {
			if c != ca && now.Before(c.NotAfter) {
				cas = append(cas, c)
			}
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating the serving key: %w", err)
	}
	notBefore, notAfter := validityWindow(validity, now)
	if notAfter.After(ca.NotAfter) {
		notAfter = ca.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: hosts[0]},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("signing the serving certificate: %w", err)
	}
	keyPEM, err := pkcs8PEM(key)
	if err != nil {
		return nil, err
	}
	caKeyPEM, err := pkcs8PEM(caKey)
	if err != nil {
		return nil, err
	}
	var bundle bytes.Buffer
	for _, c := range cas {
		_ = pem.Encode(&bundle, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return map[string][]byte{
		CertKey:         pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyKey:          keyPEM,
		CAKey:           bundle.Bytes(),
		CAPrivateKeyKey: caKeyPEM,
	}, nil
}

// validityWindow starts a certificate a little before now (a tenth of its
// validity, at most an hour) so that clocks slightly behind accept it.
func validityWindow(validity time.Duration, now time.Time) (time.Time, time.Time) {
	return now.Add(-min(validity/10, time.Hour)), now.Add(validity)
}

func newCA(validity time.Duration, now time.Time) (*x509.Certificate, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generating the CA key: %w", err)
	}
	notBefore, notAfter := validityWindow(validity, now)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "nsprov webhook CA " + now.UTC().Format("2006-01-02T15:04:05Z")},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("signing the CA: %w", err)
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return ca, key, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		panic(fmt.Sprintf("reading random numbers: %v", err))
	}
	return n.Add(n, big.NewInt(1))
}

func pkcs8PEM(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding a private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}
