package app

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/nsprov/nsprov/internal/server"
)

// certDir is a directory with (empty) tls.crt and tls.key files: Validate
// only checks that they exist.
func certDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"tls.crt", "tls.key"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// runServeCommand runs `nsprov serve` with a context that has already ended
// and a kubeconfig that does not exist, so that nothing can start even if
// validation let the options through.
func runServeCommand(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var out, errOut bytes.Buffer
	args = append([]string{"serve", "--kubeconfig", filepath.Join(t.TempDir(), "no-kubeconfig")}, args...)
	code := run(ctx, args, streams{in: strings.NewReader(""), out: &out, err: &errOut})
	return result{code: code, out: out.String(), errOut: errOut.String()}
}

func TestServeOptionErrors(t *testing.T) {
	certs := certDir(t)
	noKey := t.TempDir()
	if err := os.WriteFile(filepath.Join(noKey, "tls.crt"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	aFile := filepath.Join(certs, "tls.crt")
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"missing --cert-dir", nil, []string{"--cert-dir is required"}},
		{"cert-dir without a key", []string{"--cert-dir", noKey}, []string{"--cert-dir: ", "tls.key", "mount the webhook's TLS secret there"}},
		{"custom key name missing", []string{"--cert-dir", certs, "--key-name", "server.key"}, []string{"server.key"}},
		{"port 0", []string{"--cert-dir", certs, "--webhook-port", "0"}, []string{"--webhook-port 0 is not a port number (1-65535)"}},
		{"port too large", []string{"--cert-dir", certs, "--webhook-port", "65536"}, []string{"--webhook-port 65536 is not a port number"}},
		{"port negative", []string{"--cert-dir", certs, "--webhook-port", "-1"}, []string{"--webhook-port -1 is not a port number"}},
		{"port not a number", []string{"--cert-dir", certs, "--webhook-port", "https"}, []string{`invalid argument "https" for "--webhook-port"`}},
		{"bad --log-format", []string{"--cert-dir", certs, "--log-format", "xml"}, []string{`--log-format "xml" is not supported; use json or text`}},
		{"metrics address without port", []string{"--cert-dir", certs, "--metrics-bind-address", "8080"}, []string{`--metrics-bind-address "8080" is not host:port`}},
		{"probe address with a named port", []string{"--cert-dir", certs, "--health-probe-bind-address", ":http"}, []string{`--health-probe-bind-address ":http" has no numeric port`}},
		{"policy dir is a file", []string{"--cert-dir", certs, "--policy-dir", aFile}, []string{"--policy-dir", "is not a directory"}},
		{"policy dir missing", []string{"--cert-dir", certs, "--policy-dir", filepath.Join(certs, "nope")}, []string{"--policy-dir", "is not a directory"}},
		{"poll interval too short", []string{"--cert-dir", certs, "--policy-poll-interval", "10ms"}, []string{"--policy-poll-interval 10ms is too short"}},
		{"negative verbosity", []string{"--cert-dir", certs, "-v", "-1"}, []string{"--verbosity -1 must not be negative"}},
		{"unknown evaluator", []string{"--cert-dir", certs, "--policy-evaluator", "wasm"}, []string{`--policy-evaluator "wasm" is not known; use compiled or topdown`}},
		{"unknown flag", []string{"--cert-dir", certs, "--port", "9443"}, []string{"unknown flag: --port"}},
		{"extra argument", []string{"--cert-dir", certs, "now"}, []string{`unknown command "now"`}},
		{
			"every error at once",
			[]string{"--webhook-port", "0", "--log-format", "xml"},
			[]string{"--cert-dir is required", "--webhook-port 0", `--log-format "xml"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runServeCommand(t, tt.args...)
			if r.code != ExitBadUsage {
				t.Fatalf("want exit 2\n%s", r)
			}
			for _, w := range tt.want {
				if !strings.Contains(r.errOut, w) {
					t.Errorf("stderr lacks %q:\n%s", w, r.errOut)
				}
			}
			if !strings.HasPrefix(r.errOut, "nsprov: ") {
				t.Errorf("stderr does not start with nsprov: \n%s", r.errOut)
			}
			// Nothing started: no log line, no attempt to reach an API server.
			for _, started := range []string{"policy loaded", "starting", "no Kubernetes API configuration"} {
				if strings.Contains(r.errOut, started) {
					t.Errorf("serve went past validation (%q):\n%s", started, r.errOut)
				}
			}
			if r.out != "" {
				t.Errorf("stdout: %s", r.out)
			}
		})
	}
}

func TestServeOptionsValid(t *testing.T) {
	certs := certDir(t)
	tests := []struct {
		name string
		args []string
	}{
		{"defaults", []string{"--cert-dir", certs}},
		{"everything", []string{
			"--cert-dir", certs, "--webhook-host", "127.0.0.1", "--webhook-port", "8443",
			"--metrics-bind-address", "0", "--health-probe-bind-address", "127.0.0.1:18081",
			"--policy-dir", copyPolicies(t), "--policy-poll-interval", "100ms", "--log-format", "text", "-v", "1",
			"--policy-evaluator", "topdown",
		}},
		{"probes off", []string{"--cert-dir", certs, "--health-probe-bind-address", ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := &ServeOptions{}
			fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
			o.AddFlags(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			if err := o.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
		})
	}
	o := &ServeOptions{}
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	o.AddFlags(fs)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	want := ServeOptions{server.Options{
		Kube:      server.KubeOptions{QPS: 50, Burst: 100},
		Webhook:   server.WebhookOptions{Port: 9443, CertName: "tls.crt", KeyName: "tls.key", Certs: defaultCertOptions},
		Endpoints: server.EndpointOptions{MetricsAddr: ":8080", ProbeAddr: ":8081"},
		Policy:    server.PolicyOptions{PollInterval: 2 * time.Second, DecisionCacheSize: 4096, DecisionCacheBytes: 16 << 20, Evaluator: "compiled", LastGood: "nsprov-policy-last-good"},
		Controller: server.ControllerOptions{
			Enabled: true, ArgoNamespace: "argo", WorkflowTemplate: "nsprov-provision",
			Identity: "system:serviceaccount:nsprov-system:nsprov", LeaderElect: true, ConcurrentReconciles: 4,
			RetryBaseDelay: 30 * time.Second, RetryMaxDelay: time.Hour, MaxRunningWorkflows: 128, WorkflowStartRate: 4, WorkflowStartBurst: 10,
		},
		Audit:   server.AuditOptions{ReportSize: 1000, QueueSize: 10000, Interval: 10 * time.Minute, DecisionLog: "stdout"},
		Logging: server.LoggingOptions{Format: "json"},
	}}
	if !reflect.DeepEqual(*o, want) {
		t.Errorf("defaults %+v, want %+v", *o, want)
	}
}

// A policy directory that does not compile stops serve before the manager
// is built.
func TestServeBrokenPolicyDir(t *testing.T) {
	broken := brokenPolicies(t)
	r := runServeCommand(t, "--cert-dir", certDir(t), "--policy-dir", broken)
	if r.code != ExitBadUsage {
		t.Fatalf("want exit 2\n%s", r)
	}
	for _, w := range []string{"the policy bundle does not load, so nsprov cannot start", "lib.rego"} {
		if !strings.Contains(r.errOut, w) {
			t.Errorf("stderr lacks %q:\n%s", w, r.errOut)
		}
	}
	if strings.Contains(r.errOut, "no Kubernetes API configuration") {
		t.Errorf("serve went on after the policy failed:\n%s", r.errOut)
	}
}
