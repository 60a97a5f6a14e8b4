package app

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/pflag"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	nsadmission "github.com/nsprov/nsprov/internal/admission"
	"github.com/nsprov/nsprov/internal/policy"
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
	want := ServeOptions{
		WebhookPort: 9443, CertName: "tls.crt", KeyName: "tls.key", MetricsAddr: ":8080", ProbeAddr: ":8081",
		PolicyPollInterval: 2 * time.Second, DecisionCacheSize: 4096, PolicyEvaluator: "compiled", LogFormat: "json",
		Controller: true, ArgoNamespace: "argo", WorkflowTemplate: "nsprov-provision",
		Identity: "system:serviceaccount:nsprov-system:nsprov", LeaderElect: true, ConcurrentReconciles: 4, KubeAPIQPS: 50, KubeAPIBurst: 100,
		Certs:           defaultCertOptions,
		AuditReportSize: 1000, AuditQueueSize: 10000, AuditInterval: 10 * time.Minute, DecisionLog: "stdout",
	}
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

type memRecorder struct {
	mu      sync.Mutex
	records []nsadmission.Record
}

func (m *memRecorder) Record(_ context.Context, r *nsadmission.Record) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.records = append(m.records, *r)
}

// RegisterWebhooks serves both handlers on their paths.
func TestRegisterWebhooks(t *testing.T) {
	b, err := policy.LoadEmbedded(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	server := webhook.NewServer(webhook.Options{})
	rec := &memRecorder{}
	RegisterWebhooks(server, policy.StaticStore(b), rec)
	srv := httptest.NewServer(server.WebhookMux())
	defer srv.Close()

	obj := []byte(`{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"payments-dev","annotations":{"nsprov.io/team":"payments","nsprov.io/environment":"development"}}}`)
	post := func(path string, req admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
		t.Helper()
		body, err := json.Marshal(admissionv1.AdmissionReview{
			TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
			Request:  &req,
		})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Post(srv.URL+path, "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var ar admissionv1.AdmissionReview
		if err := json.NewDecoder(resp.Body).Decode(&ar); err != nil {
			t.Fatal(err)
		}
		if ar.Response == nil || ar.Response.UID != req.UID {
			t.Fatalf("%s: response %+v", path, ar.Response)
		}
		return ar.Response
	}
	req := admissionv1.AdmissionRequest{
		UID:       "u1",
		Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Namespace"},
		Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "namespaces"},
		Name:      "payments-dev",
		Operation: admissionv1.Create,
		UserInfo:  authenticationv1.UserInfo{Username: "bob", Groups: []string{"team-web"}},
		Object:    runtime.RawExtension{Raw: obj},
	}
	m := post(nsadmission.MutatePath, req)
	if !m.Allowed || m.PatchType == nil || len(m.Patch) == 0 {
		t.Errorf("mutate: %+v", m)
	}
	v := post(nsadmission.ValidatePath, req)
	if v.Allowed || v.Result == nil || v.Result.Code != http.StatusForbidden || !strings.Contains(v.Result.Message, "requester-not-in-team: ") {
		t.Errorf("validate: %+v", v)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.records) != 2 || rec.records[0].Webhook != "mutate" || rec.records[1].Webhook != "validate" {
		t.Errorf("records %+v", rec.records)
	}
}
