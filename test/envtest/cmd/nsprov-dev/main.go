// Command nsprov-dev runs nsprov locally for `make dev`: a real kube-apiserver
// and etcd with nsprov's webhooks registered, and kubeconfigs for an admin and
// for the walkthrough's users under the state directory. It runs until
// interrupted and leaves no process behind.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"go.uber.org/zap/zapcore"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/nsprov/nsprov/test/envtest"
)

// options are the flags of nsprov-dev.
type options struct {
	// stateDir receives the kubeconfigs and the log.
	stateDir string
	// policyDir replaces the embedded policy bundle and is watched for edits.
	policyDir string
}

// users are the walkthrough's people: name, then groups.
var users = [][]string{
	{"alice", "team-payments"},
	{"bob", "team-web"},
	{"carol", "platform-admins"},
}

func main() {
	o := options{}
	flag.StringVar(&o.stateDir, "state-dir", ".dev", "directory for the kubeconfigs and the log")
	flag.StringVar(&o.policyDir, "policy-dir", os.Getenv("POLICY_DIR"), "policy bundle directory to serve instead of the embedded one (default $POLICY_DIR)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintf(os.Stderr, "nsprov-dev: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, o options) error {
	if err := os.MkdirAll(o.stateDir, 0o700); err != nil {
		return err
	}
	logPath := filepath.Join(o.stateDir, "nsprov.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer logFile.Close()
	log := zap.New(zap.WriteTo(logFile), zap.Level(zapcore.Level(-1)))

	fmt.Println("nsprov dev: starting etcd, kube-apiserver and the nsprov webhooks")
	env, err := envtest.Start(ctx, envtest.Options{PolicyDir: o.policyDir, Logger: log})
	if err != nil {
		return err
	}
	defer func() {
		if err := env.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "nsprov-dev: stopping: %v\n", err)
		}
		fmt.Println("nsprov dev: stopped")
	}()

	admin, err := env.UserKubeconfig("admin", "system:masters")
	if err != nil {
		return err
	}
	files := map[string][]byte{"kubeconfig": admin}
	for _, u := range users {
		kc, err := env.UserKubeconfig(u[0], u[1:]...)
		if err != nil {
			return err
		}
		files[u[0]+".kubeconfig"] = kc
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(o.stateDir, name), content, 0o600); err != nil {
			return err
		}
	}
	abs, _ := filepath.Abs(o.stateDir)
	policy := "embedded"
	if o.policyDir != "" {
		policy = o.policyDir + " (reloaded on change)"
	}
	fmt.Printf(`nsprov dev: policy %s, log %s
  export KUBECONFIG=%[3]s/kubeconfig          # admin (system:masters)
  kubectl --kubeconfig %[3]s/alice.kubeconfig ...   # alice, group team-payments
  kubectl --kubeconfig %[3]s/bob.kubeconfig ...     # bob, group team-web
  kubectl --kubeconfig %[3]s/carol.kubeconfig ...   # carol, group platform-admins
nsprov dev ready (Ctrl-C stops it)
`, policy, logPath, abs)
	<-ctx.Done()
	if errors.Is(ctx.Err(), context.Canceled) {
		fmt.Println("nsprov dev: stopping")
	}
	return nil
}
