// Command nsprov-dev runs nsprov locally for `make dev`: a real kube-apiserver
// and etcd with nsprov's webhooks, controller and workflow-step runner, and one
// kubeconfig with the contexts admin, alice and bob in the state directory. It
// runs until interrupted and leaves no process behind.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/nsprov/nsprov/test/envtest/devenv"
)

// options are the flags of nsprov-dev.
type options struct {
	// stateDir receives the kubeconfig, the log and the control plane's
	// temporary files.
	stateDir string
	// policyDir replaces the embedded policy bundle and is watched for edits.
	policyDir string
}

func main() {
	o := options{}
	flag.StringVar(&o.stateDir, "state-dir", ".dev", "directory for the kubeconfig, the log and temporary files")
	flag.StringVar(&o.policyDir, "policy-dir", os.Getenv("POLICY_DIR"), "policy bundle directory to serve instead of the embedded one (default $POLICY_DIR)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintf(os.Stderr, "nsprov dev: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	fmt.Println("nsprov dev: starting etcd, kube-apiserver and nsprov")
	env, err := devenv.Start(ctx, devenv.Options{StateDir: o.stateDir, PolicyDir: o.policyDir})
	if err != nil {
		return err
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "nsprov dev: stopping: %v\n", err)
		}
		fmt.Println("nsprov dev: stopped")
	}()
	logPath := filepath.Join(o.stateDir, devenv.LogFile)

	policy := "embedded"
	if o.policyDir != "" {
		policy = o.policyDir + " (reloaded on change)"
	}
	kubeconfig := env.Kubeconfig
	if wd, err := os.Getwd(); err != nil {
		// Keep the absolute path.
	} else if rel, err := filepath.Rel(wd, kubeconfig); err == nil && !strings.HasPrefix(rel, "..") {
		kubeconfig = "$PWD/" + rel
	}
	fmt.Printf(`nsprov dev ready: policy %s, log %s (Ctrl-C stops it). In another terminal:
  export KUBECONFIG=%s PATH=$PWD/bin:$PWD/bin/k8s:$PATH
  kubectl --context alice create -f examples/payments-dev.yaml
  kubectl --context alice wait --for=condition=Provisioned ns/payments-dev
  kubectl --context bob create -f examples/payments-staging-by-bob.yaml
`, policy, logPath, kubeconfig)
	<-ctx.Done()
	if errors.Is(ctx.Err(), context.Canceled) {
		fmt.Println("nsprov dev: stopping")
	}
	return nil
}
