package server

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// parse binds o's flags to a fresh flag set and parses args.
func parse(t *testing.T, o interface{ AddFlags(*pflag.FlagSet) }, args ...string) {
	t.Helper()
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	o.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
}

func TestAuditOptions(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		args []string
		want string // empty: valid
	}{
		{nil, ""},
		{[]string{"--audit-report-size", "200", "--audit-queue-size", "50", "--audit-interval", "0", "--decision-log", "off"}, ""},
		{[]string{"--decision-log", "stderr", "--audit-interval", "1h"}, ""},
		{[]string{"--decision-log", filepath.Join(dir, "decisions.jsonl")}, ""},
		{[]string{"--audit-report-size", "0"}, "--audit-report-size 0 must be at least 1"},
		{[]string{"--audit-queue-size", "-3"}, "--audit-queue-size -3 must be at least 1"},
		{[]string{"--audit-interval", "2s"}, "--audit-interval 2s must be 0 (no periodic audit) or at least 10s"},
		{[]string{"--audit-interval", "-1m"}, "--audit-interval -1m0s must be 0"},
		{[]string{"--decision-log", ""}, "--decision-log must not be empty"},
		{[]string{"--decision-log", filepath.Join(dir, "missing", "log")}, "does not exist"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			o := &AuditOptions{}
			parse(t, o, tt.args...)
			err := o.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("unexpected error %v", err)
			case tt.want != "" && (err == nil || strings.Count(err.Error(), "\n") != 0 || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("error %v, want one saying %q", err, tt.want)
			}
		})
	}
	o := &AuditOptions{}
	parse(t, o)
	if want := (AuditOptions{ReportSize: 1000, QueueSize: 10000, Interval: 10 * time.Minute, DecisionLog: "stdout"}); *o != want {
		t.Errorf("defaults %+v, want %+v", *o, want)
	}
}

func TestOpenDecisionLog(t *testing.T) {
	var out, errOut bytes.Buffer
	for _, tt := range []struct {
		dest string
		want any
	}{{"stdout", &out}, {"stderr", &errOut}} {
		w, closeLog, err := (&AuditOptions{DecisionLog: tt.dest}).OpenDecisionLog(&out, &errOut)
		if err != nil || w != tt.want {
			t.Errorf("%s: writer %v, error %v", tt.dest, w, err)
		}
		closeLog()
	}
	if w, _, err := (&AuditOptions{DecisionLog: "off"}).OpenDecisionLog(&out, &errOut); w != nil || err != nil {
		t.Errorf("off: writer %v, error %v", w, err)
	}
	path := filepath.Join(t.TempDir(), "decisions.jsonl")
	if err := os.WriteFile(path, []byte("{}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w, closeLog, err := (&AuditOptions{DecisionLog: path}).OpenDecisionLog(&out, &errOut)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write([]byte("{\"a\":1}\n")); err != nil {
		t.Fatal(err)
	}
	closeLog()
	if b, _ := os.ReadFile(path); string(b) != "{}\n{\"a\":1}\n" {
		t.Errorf("the file holds %q; the decision log appends", b)
	}
}

// Every group reports its own problems, and Options.Validate reports all of
// them at once.
func TestOptionGroupsValidate(t *testing.T) {
	tests := []struct {
		name  string
		group interface {
			AddFlags(*pflag.FlagSet)
			Validate() error
		}
		args []string
		want string
	}{
		{"kube", &KubeOptions{}, []string{"--kube-api-qps", "0"}, "--kube-api-qps 0 and --kube-api-burst 100 must be positive"},
		{"webhook", &WebhookOptions{}, []string{"--webhook-port", "0", "--cert-mode", "files"}, "--webhook-port 0 is not a port number (1-65535)"},
		{"certs", &CertOptions{}, []string{"--cert-mode", "acme"}, `--cert-mode "acme" is not supported; use files or self-managed`},
		{"endpoints", &EndpointOptions{}, []string{"--metrics-bind-address", "8080"}, `--metrics-bind-address "8080" is not host:port`},
		{"pprof without metrics", &EndpointOptions{}, []string{"--metrics-bind-address", "0", "--enable-pprof"}, "--enable-pprof needs the metrics listener"},
		{"policy", &PolicyOptions{}, []string{"--decision-cache-size", "-1"}, "--decision-cache-size -1 must not be negative; use 0 to disable the cache"},
		{"policy", &PolicyOptions{}, []string{"--policy-decision-cache-bytes", "-1"}, "--policy-decision-cache-bytes -1 must not be negative; use 0 to disable the cache"},
		{"controller", &ControllerOptions{}, []string{"--concurrent-reconciles", "0"}, "--concurrent-reconciles 0 must be at least 1"},
		{"controller off", &ControllerOptions{}, []string{"--controller=false", "--concurrent-reconciles", "0"}, ""},
		{"logging", &LoggingOptions{}, []string{"--log-format", "xml"}, `--log-format "xml" is not supported; use json or text`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parse(t, tt.group, tt.args...)
			err := tt.group.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("unexpected error %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("error %v, want one saying %q", err, tt.want)
			}
		})
	}
	o := &Options{}
	parse(t, o, "--kube-api-burst", "0", "--log-format", "xml", "--audit-queue-size", "0")
	err := o.Validate()
	for _, want := range []string{"--cert-dir is required", "--kube-api-burst 0", `--log-format "xml"`, "--audit-queue-size 0"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Options.Validate: %v, want it to say %q", err, want)
		}
	}
}

func TestControllerPacingOptions(t *testing.T) {
	tests := []struct {
		args []string
		want string // empty: valid
	}{
		{nil, ""},
		{[]string{"--retry-base-delay", "1s", "--retry-max-delay", "1m", "--max-running-workflows", "0", "--workflow-start-rate", "0"}, ""},
		{[]string{"--retry-base-delay", "0s"}, "--retry-base-delay 0s must be positive and at most --retry-max-delay 1h0m0s"},
		{[]string{"--retry-base-delay", "2h"}, "must be positive and at most --retry-max-delay"},
		{[]string{"--max-running-workflows", "-1"}, "must not be negative (0 is no bound)"},
		{[]string{"--workflow-start-rate", "-2"}, "must not be negative (0 is no bound)"},
		{[]string{"--workflow-start-burst", "0"}, "--workflow-start-burst 0 must be at least 1 while --workflow-start-rate is set"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			o := &ControllerOptions{}
			parse(t, o, tt.args...)
			err := o.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("unexpected error %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("error %v, want one saying %q", err, tt.want)
			}
		})
	}
	o := &ControllerOptions{}
	parse(t, o)
	if o.RetryBaseDelay != 30*time.Second || o.RetryMaxDelay != time.Hour || o.MaxRunningWorkflows != 128 || o.WorkflowStartRate != 4 || o.WorkflowStartBurst != 10 {
		t.Errorf("defaults %+v", *o)
	}
}
