package certs

import (
	"crypto/x509"
	"strings"
	"testing"
	"time"
)

var hosts = []string{"nsprov.nsprov-system.svc", "127.0.0.1"}

func mustIssue(t *testing.T, old *material, now time.Time) *material {
	t.Helper()
	data, err := issue(old, hosts, 90*time.Minute, 9*time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	m, err := parse(data)
	if err != nil {
		t.Fatalf("parsing issued data: %v", err)
	}
	return m
}

func TestIssueAndRenew(t *testing.T) {
	start := time.Now()
	first := mustIssue(t, nil, start)
	if p := first.problem(hosts, start); p != "" {
		t.Fatalf("a fresh certificate has a problem: %s", p)
	}
	if len(first.cas) != 1 || first.caKey == nil {
		t.Fatalf("fresh bundle has %d CAs (key %v), want 1 with its key", len(first.cas), first.caKey != nil)
	}

	tests := []struct {
		name        string
		at          time.Duration // after start
		wantProblem string
		wantNewCA   bool
		wantCAs     int
	}{
		{name: "half way through the lifetime", at: 45 * time.Minute},
		{name: "two thirds through: the leaf is renewed by the same CA", at: 61 * time.Minute, wantProblem: "two thirds", wantCAs: 1},
		{name: "the CA is two thirds through: a new CA, the old one kept", at: 6*time.Hour + 5*time.Minute, wantProblem: "does not verify", wantNewCA: true, wantCAs: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			now := start.Add(tc.at)
			p := first.problem(hosts, now)
			if tc.wantProblem == "" {
				if p != "" {
					t.Fatalf("problem = %q, want none", p)
				}
				return
			}
			if !strings.Contains(p, tc.wantProblem) {
				t.Fatalf("problem = %q, want it to mention %q", p, tc.wantProblem)
			}
			next := mustIssue(t, first, now)
			if p := next.problem(hosts, now); p != "" {
				t.Fatalf("renewed certificate has a problem: %s", p)
			}
			if got := !next.cas[0].Equal(first.cas[0]); got != tc.wantNewCA {
				t.Errorf("new CA = %v, want %v", got, tc.wantNewCA)
			}
			if len(next.cas) != tc.wantCAs {
				t.Errorf("bundle holds %d CAs, want %d", len(next.cas), tc.wantCAs)
			}
			if next.leaf.SerialNumber.Cmp(first.leaf.SerialNumber) == 0 {
				t.Error("the renewed certificate has the old serial number")
			}
			// A replica still serving the old certificate stays trusted by
			// the new bundle until that certificate expires.
			pool := x509.NewCertPool()
			for _, c := range next.cas {
				pool.AddCert(c)
			}
			if _, err := first.leaf.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: start.Add(time.Minute)}); err != nil {
				t.Errorf("the old certificate does not verify against the new bundle: %v", err)
			}
		})
	}
}

func TestProblems(t *testing.T) {
	now := time.Now()
	m := mustIssue(t, nil, now)
	if p := m.problem([]string{"other.example"}, now); !strings.Contains(p, "not valid for other.example") {
		t.Errorf("problem for a host the certificate lacks = %q", p)
	}
	// A fresh certificate from a CA two thirds through its life (9h CA,
	// 90m certificates) is renewed, with a new CA.
	fresh := mustIssue(t, m, now.Add(5*time.Hour+30*time.Minute))
	if !fresh.cas[0].Equal(m.cas[0]) {
		t.Fatal("a renewal before the CA is due changed the CA")
	}
	if p := fresh.problem(hosts, now.Add(6*time.Hour+time.Minute)); !strings.Contains(p, "the CA is two thirds through") {
		t.Errorf("problem when the CA is due = %q", p)
	}
	adopted := *m
	adopted.caKey = nil
	if !adopted.caDue(now) {
		t.Error("a Secret without ca.key must get a new CA when it is renewed")
	}
}

func TestParseErrors(t *testing.T) {
	now := time.Now()
	a, err := issue(nil, hosts, time.Hour, 3*time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	b, err := issue(nil, hosts, time.Hour, 3*time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	with := func(k string, v []byte) map[string][]byte {
		d := map[string][]byte{}
		for key, val := range a {
			d[key] = val
		}
		d[k] = v
		return d
	}
	tests := []struct {
		name string
		data map[string][]byte
		want string
	}{
		{"empty", nil, "lacks tls.crt"},
		{"no key", with(KeyKey, nil), "lacks tls.crt"},
		{"key of another certificate", with(KeyKey, b[KeyKey]), "tls.crt and tls.key"},
		{"CA key of another CA", with(CAPrivateKeyKey, b[CAPrivateKeyKey]), "does not belong"},
		{"CA not PEM", with(CAKey, []byte("junk")), "no certificate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parse(tc.data)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("parse error = %v, want one containing %q", err, tc.want)
			}
		})
	}
	if _, err := parse(with(CAPrivateKeyKey, nil)); err != nil {
		t.Errorf("a Secret without ca.key (from another issuer) must be adoptable: %v", err)
	}
}
