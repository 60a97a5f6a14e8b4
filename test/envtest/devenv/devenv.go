package devenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/go-logr/logr"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/nsprov/nsprov/test/envtest"
)

// A Person is one of the walkthrough's users: a kubeconfig context of the same
// name authenticates as Name with Groups (the API server adds
// system:authenticated).
type Person struct {
	Name   string
	Groups []string
}

// People are the contexts of the dev kubeconfig; admin is the current one.
var People = []Person{
	{Name: "admin", Groups: []string{"system:masters"}},
	{Name: "alice", Groups: []string{"team-payments"}},
	{Name: "bob", Groups: []string{"team-search"}},
}

// Files in the state directory.
const (
	// KubeconfigFile holds the contexts of People.
	KubeconfigFile = "kubeconfig"
	// LogFile receives nsprov's logs.
	LogFile = "nsprov.log"
	// processesFile records the control-plane processes of the running
	// environment, so the next start can stop them if this one was killed.
	processesFile = "processes"
	// tmpDir holds the control plane's data; it is removed on stop and on
	// the next start.
	tmpDir = "tmp"
)

// Options configure the dev environment.
type Options struct {
	// StateDir receives the kubeconfig, the log and the control plane's
	// temporary files.
	StateDir string
	// PolicyDir replaces the embedded policy bundle and is watched for edits.
	PolicyDir string
	// Logger receives nsprov's logs (default: discarded).
	Logger logr.Logger
}

// Env is a running dev environment.
type Env struct {
	*envtest.Env
	// Kubeconfig is the path of the kubeconfig with a context per person.
	Kubeconfig string

	stateDir string
}

// Start cleans up what a killed earlier run left in the state directory, then
// starts etcd, kube-apiserver and nsprov, and writes the kubeconfig.
func Start(ctx context.Context, o Options) (*Env, error) {
	if o.StateDir == "" {
		return nil, errors.New("devenv: a state directory is required")
	}
	stateDir, err := filepath.Abs(o.StateDir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating the state directory: %w", err)
	}
	if err := stopStale(stateDir); err != nil {
		return nil, err
	}
	// The control plane keeps its data in temporary directories; keep them
	// in the state directory so that none outlives the environment.
	tmp := filepath.Join(stateDir, tmpDir)
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return nil, err
	}
	if err := os.Setenv("TMPDIR", tmp); err != nil {
		return nil, err
	}

	env, err := envtest.Start(ctx, envtest.Options{PolicyDir: o.PolicyDir, Logger: o.Logger})
	if err != nil {
		_ = os.RemoveAll(tmp)
		return nil, err
	}
	e := &Env{Env: env, stateDir: stateDir, Kubeconfig: filepath.Join(stateDir, KubeconfigFile)}
	if err := recordProcesses(filepath.Join(stateDir, processesFile)); err != nil {
		_ = e.Stop()
		return nil, err
	}
	if err := e.writeKubeconfig(); err != nil {
		_ = e.Stop()
		return nil, err
	}
	return e, nil
}

// writeKubeconfig writes one kubeconfig with a context, user and the cluster
// for each person.
func (e *Env) writeKubeconfig() error {
	out := clientcmdapi.NewConfig()
	for _, p := range People {
		data, err := e.UserKubeconfig(p.Name, p.Groups...)
		if err != nil {
			return err
		}
		kc, err := clientcmd.Load(data)
		if err != nil {
			return fmt.Errorf("reading the kubeconfig of %s: %w", p.Name, err)
		}
		kctx, ok := kc.Contexts[kc.CurrentContext]
		if !ok {
			return fmt.Errorf("the kubeconfig of %s has no current context", p.Name)
		}
		out.Clusters["nsprov-dev"] = kc.Clusters[kctx.Cluster]
		out.AuthInfos[p.Name] = kc.AuthInfos[kctx.AuthInfo]
		out.Contexts[p.Name] = &clientcmdapi.Context{Cluster: "nsprov-dev", AuthInfo: p.Name}
	}
	out.CurrentContext = People[0].Name
	return clientcmd.WriteToFile(*out, e.Kubeconfig)
}

// Stop stops nsprov and the control plane and removes the kubeconfig and the
// temporary files; the log stays.
func (e *Env) Stop() error {
	err := e.Env.Stop()
	for _, name := range []string{KubeconfigFile, processesFile, tmpDir} {
		if rmErr := os.RemoveAll(filepath.Join(e.stateDir, name)); rmErr != nil {
			err = errors.Join(err, rmErr)
		}
	}
	return err
}
