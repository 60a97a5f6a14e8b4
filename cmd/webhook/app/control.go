package app

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/nsprov/nsprov/internal/contract"
)

// controlAction is one of the requests a requester makes of a namespace's
// provisioning by annotating it: cancel or reprovision.
type controlAction struct {
	// verb names the action in messages ("cancel", "reprovision").
	verb string
	// annotation is the annotation the action sets.
	annotation string
	// value is the value it sets it to.
	value func() string
	// check refuses the action for the namespace as it is, saying why
	// (nil: always allowed).
	check func(ns *corev1.Namespace) error
	// done is what is printed once the annotation is set.
	done string
}

// cancelAction sets nsprov.io/cancel; it refuses when nothing is waiting or
// running for the request as it now is.
var cancelAction = controlAction{
	verb:       "cancel",
	annotation: contract.CancelAnnotation,
	value:      func() string { return "true" },
	check: func(ns *corev1.Namespace) error {
		state := ns.Annotations[contract.ProvisioningAnnotation]
		if state == contract.ProvisioningPending {
			return nil
		}
		if state == "" {
			state = "not requested"
		}
		return fmt.Errorf("nothing to cancel: the provisioning of namespace %s is %s (%s); "+
			"`kubectl nsprov reprovision %s` runs it again", ns.Name, state, contract.ProvisioningAnnotation, ns.Name)
	},
	done: "cancel requested: nsprov stops its Workflow and reports Provisioned=False (Cancelled)",
}

// reprovisionAction sets nsprov.io/reprovision to a new value, which runs
// the namespace's plan again.
var reprovisionAction = controlAction{
	verb:       "reprovision",
	annotation: contract.ReprovisionAnnotation,
	value:      func() string { return time.Now().UTC().Format(time.RFC3339Nano) },
	check: func(ns *corev1.Namespace) error {
		if ns.Annotations[contract.TeamAnnotation] == "" {
			return fmt.Errorf("namespace %s was not requested from nsprov (it has no %s annotation); nothing to provision",
				ns.Name, contract.TeamAnnotation)
		}
		return nil
	},
	done: "reprovision requested: nsprov runs its plan again",
}

func newCancelCommand(s streams, co *ClientOptions) *cobra.Command {
	return newControlCommand(s, co, cancelAction, &cobra.Command{
		Use:   "cancel NAME",
		Short: "Cancel the provisioning that waits or runs for a namespace (sets " + contract.CancelAnnotation + ")",
		Long: "Stop the provisioning of namespace NAME, as you: nsprov shuts its Workflow down (or never starts it when it " +
			"still waits its turn), reports Provisioned=False with reason Cancelled and sets " + contract.ProvisioningAnnotation +
			" to Cancelled. Nothing runs again until the request changes or `reprovision` asks for it. Exit code 1 when " +
			"nothing waits or runs.",
		Example: "  kubectl nsprov cancel payments-dev\n  kubectl nsprov status payments-dev --watch",
	})
}

func newReprovisionCommand(s streams, co *ClientOptions) *cobra.Command {
	return newControlCommand(s, co, reprovisionAction, &cobra.Command{
		Use:   "reprovision NAME",
		Short: "Run a namespace's provisioning again (sets " + contract.ReprovisionAnnotation + " to a new value)",
		Long: "Run the plan of namespace NAME again, as you: after a failure whose cause is fixed, after a cancel, or to " +
			"restore what someone removed. " + contract.ProvisioningAnnotation + " turns Pending at once; follow it with " +
			"`status NAME --watch`.",
		Example: "  kubectl nsprov reprovision payments-dev\n  kubectl nsprov status payments-dev --watch",
	})
}

// newControlCommand completes cmd into the command that performs a.
func newControlCommand(s streams, co *ClientOptions, a controlAction, cmd *cobra.Command) *cobra.Command {
	cmd.Args = cobra.ExactArgs(1)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		name := args[0]
		if errs := validation.IsDNS1123Label(name); len(errs) > 0 {
			return usageError(fmt.Errorf("namespace name %q is not valid: %s", name, strings.Join(errs, "; ")))
		}
		cfg, err := co.RESTConfig()
		if err != nil {
			return err
		}
		c, err := newPluginClient(cfg)
		if err != nil {
			return err
		}
		return runControl(cmd.Context(), c, a, name, s)
	}
	return cmd
}

// runControl sets a's annotation on namespace name, after a's check on the
// namespace as the caller reads it. The patch carries the resourceVersion
// read, so that a namespace changed in between is read and checked again
// rather than annotated on a stale judgement.
func runControl(ctx context.Context, c client.Client, a controlAction, name string, s streams) error {
	for {
		ns := &corev1.Namespace{}
		if err := c.Get(ctx, client.ObjectKey{Name: name}, ns); err != nil {
			return controlFailed(a, name, err)
		}
		if err := a.check(ns); err != nil {
			return &exitError{code: ExitDenied, err: err}
		}
		patch, err := json.Marshal(map[string]any{"metadata": map[string]any{
			"resourceVersion": ns.ResourceVersion,
			"annotations":     map[string]string{a.annotation: a.value()},
		}})
		if err != nil {
			return err
		}
		err = c.Patch(ctx, ns, client.RawPatch(types.MergePatchType, patch))
		if apierrors.IsConflict(err) {
			continue
		}
		if err != nil {
			return controlFailed(a, name, err)
		}
		_, err = fmt.Fprintf(s.out, "namespace/%s: %s\nFollow it: kubectl nsprov status %s --watch\n", name, a.done, name)
		return err
	}
}

// controlFailed says why the annotation could not be set.
func controlFailed(a controlAction, name string, err error) error {
	switch {
	case apierrors.IsNotFound(err):
		return &exitError{code: ExitDenied, err: fmt.Errorf("namespace %s does not exist; request it with `kubectl nsprov request %s`", name, name)}
	case apierrors.IsForbidden(err), apierrors.IsInvalid(err):
		return &exitError{code: ExitDenied, err: fmt.Errorf("you may not %s namespace %s: %s", a.verb, name, refusalOf(err).Message)}
	}
	return fmt.Errorf("%s of namespace %s: %w", a.verb, name, err)
}
