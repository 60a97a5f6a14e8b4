package app

import (
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	reportsv1alpha1 "github.com/openreports/reports-api/apis/openreports.io/v1alpha1"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

// PluginName is the executable name under which the nsprov binary acts as
// the kubectl plugin `kubectl nsprov`: kubectl runs kubectl-nsprov from the
// PATH for `kubectl nsprov ...`.
const PluginName = "kubectl-nsprov"

// isPlugin tells whether the program was invoked as the kubectl plugin, from
// its argv[0]: kubectl-nsprov (kubectl-nsprov.exe on Windows), a copy or a
// link of the nsprov binary.
func isPlugin(argv0 string) bool {
	base := filepath.Base(argv0)
	base = strings.TrimSuffix(base, ".exe")
	return base == PluginName
}

// ClientOptions are the connection flags of the requester commands: those of
// kubectl (--kubeconfig, --context, --cluster, --user, --as, --server,
// --token, ...), so the commands act with the caller's kubeconfig and
// identity, never with nsprov's.
type ClientOptions struct {
	// Loading finds the kubeconfig: --kubeconfig, else $KUBECONFIG, else
	// ~/.kube/config.
	Loading *clientcmd.ClientConfigLoadingRules
	// Overrides are kubectl's flags that override the kubeconfig's context.
	Overrides *clientcmd.ConfigOverrides
}

// newClientOptions returns options that load the kubeconfig as kubectl does.
func newClientOptions() *ClientOptions {
	return &ClientOptions{
		Loading:   clientcmd.NewDefaultClientConfigLoadingRules(),
		Overrides: &clientcmd.ConfigOverrides{},
	}
}

// AddFlags binds kubectl's connection flags to fs.
func (o *ClientOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Loading.ExplicitPath, clientcmd.RecommendedConfigPathFlag, "",
		"kubeconfig file (default: $KUBECONFIG, or ~/.kube/config), as kubectl reads it")
	flags := clientcmd.RecommendedConfigOverrideFlags("")
	// Namespaces are cluster-scoped: a default namespace means nothing here,
	// and -n would read as the namespace requested.
	flags.ContextOverrideFlags.Namespace = clientcmd.FlagInfo{}
	clientcmd.BindOverrideFlags(o.Overrides, fs, flags)
}

// RESTConfig is the caller's API configuration, as kubectl would build it
// from the same flags.
func (o *ClientOptions) RESTConfig() (*rest.Config, error) {
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(o.Loading, o.Overrides)
	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, usageError(fmt.Errorf("no Kubernetes API configuration: %w; pass --kubeconfig or --context, or set $KUBECONFIG", err))
	}
	cfg.UserAgent = "kubectl-nsprov/" + Version
	return cfg, nil
}

// pluginScheme holds the kinds the requester commands read: Namespaces,
// Argo Workflows and OpenReports ClusterReports.
var pluginScheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, wfv1.AddToScheme, reportsv1alpha1.AddToScheme} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}()

// newPluginClient returns a client of cfg's cluster for the requester
// commands.
func newPluginClient(cfg *rest.Config) (client.Client, error) {
	c, err := client.New(cfg, client.Options{Scheme: pluginScheme})
	if err != nil {
		return nil, fmt.Errorf("creating the API client: %w", err)
	}
	return c, nil
}

// Output formats of the requester commands (-o), as kubectl spells them.
const (
	outputText = ""
	outputJSON = "json"
	outputYAML = "yaml"
)

// addOutputFlag binds -o/--output to p.
func addOutputFlag(fs *pflag.FlagSet, p *string) {
	fs.StringVarP(p, "output", "o", outputText, "output format: json or yaml (default: human-readable text)")
}

// validateOutput checks an -o value.
func validateOutput(o string) error {
	switch o {
	case outputText, outputJSON, outputYAML:
		return nil
	}
	return fmt.Errorf("-o %q is not a known output format; use -o json or -o yaml, or leave it out for text", o)
}

// printStructured writes v as JSON or YAML.
func printStructured(w io.Writer, format string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding the output: %w", err)
	}
	if format == outputYAML {
		if data, err = yaml.JSONToYAML(data); err != nil {
			return fmt.Errorf("encoding the output: %w", err)
		}
		_, err = w.Write(data)
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", data)
	return err
}

// pluginLong explains the requester commands, under either name.
const pluginLong = "Commands for the people who request namespaces: request one, follow its provisioning, cancel or re-run it, " +
	"and read why a request was denied. They use your kubeconfig and identity, as kubectl does, and need no privileges of nsprov's. " +
	"The nsprov binary runs them as `kubectl nsprov` when it is installed (copied or linked) as " + PluginName +
	" on the PATH."

// addPluginCommands adds the connection flags and the requester commands to
// parent.
func addPluginCommands(parent *cobra.Command, s streams) {
	co := newClientOptions()
	co.AddFlags(parent.PersistentFlags())
	parent.AddCommand(newRequestCommand(s, co), newStatusCommand(s, co), newWhyCommand(s, co),
		newCancelCommand(s, co), newReprovisionCommand(s, co))
}

// newPluginCommand is `nsprov plugin`: the requester commands under the
// nsprov binary's own name.
func newPluginCommand(s streams) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "plugin",
		Short: "Request namespaces and follow them, as kubectl nsprov (request, status, why, cancel, reprovision)",
		Long:  pluginLong,
		Args:  cobra.NoArgs,
	}
	addPluginCommands(cmd, s)
	return cmd
}

// NewPluginCommand builds the command tree of `kubectl nsprov`: the
// requester commands at the top level.
func NewPluginCommand(s streams) *cobra.Command {
	root := &cobra.Command{
		Use:           "nsprov",
		Annotations:   map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl nsprov"},
		Short:         "Request namespaces from nsprov and follow their provisioning",
		Long:          pluginLong,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(s.in)
	root.SetOut(s.out)
	root.SetErr(s.err)
	addPluginCommands(root, s)
	root.AddCommand(newVersionCommand(s))
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError(err) })
	return root
}
