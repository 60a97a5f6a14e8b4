package app

import (
	"context"
	"fmt"

	"github.com/go-logr/logr"
	"github.com/spf13/cobra"
	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/nsprov/nsprov/internal/server"
)

// ServeOptions are the flags of `nsprov serve`, grouped by concern (see
// server.Options).
type ServeOptions struct {
	server.Options
}

func newServeCommand(s streams) *cobra.Command {
	o := &ServeOptions{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the admission webhooks",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.Validate(); err != nil {
				return usageError(err)
			}
			return runServe(cmd.Context(), o, s)
		},
	}
	o.AddFlags(cmd.Flags())
	return cmd
}

// runServe loads the policy and the API configuration, builds the server and
// runs it until ctx ends.
func runServe(ctx context.Context, o *ServeOptions, s streams) error {
	log := o.Logging.Logger(s.err)
	ctrl.SetLogger(log)
	ctx = logr.NewContext(ctx, log)

	store, err := o.OpenStore(ctx)
	if err != nil {
		return usageError(fmt.Errorf("the policy bundle does not load, so nsprov cannot start: %w", err))
	}
	b := store.Bundle()
	log.Info("policy loaded", "source", b.Source, "revision", b.Revision, "evaluator", b.Evaluator)

	cfg, err := o.Kube.RestConfig()
	if err != nil {
		return usageError(fmt.Errorf("no Kubernetes API configuration: %w; pass --kubeconfig or run in a cluster", err))
	}
	decisionLog, closeLog, err := o.Audit.OpenDecisionLog(s.out, s.err)
	if err != nil {
		return usageError(err)
	}
	defer closeLog()
	srv, err := server.New(cfg, store, o.Options, server.Dependencies{Logger: log, DecisionLog: decisionLog})
	if err != nil {
		return err
	}
	return srv.Start(ctx)
}
