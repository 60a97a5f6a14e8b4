package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// Exit codes.
const (
	ExitOK       = 0
	ExitDenied   = 1 // policy eval, plugin request: the request is denied; policy test: a test failed; plugin status --watch: provisioning failed
	ExitBadUsage = 2 // bad input, bad flags or a broken policy
)

// exitError carries an exit code; its message, if any, is printed.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit code %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// usageError marks an error as bad input (exit code 2).
func usageError(err error) error { return &exitError{code: ExitBadUsage, err: err} }

// streams are the command's standard streams.
type streams struct {
	in       io.Reader
	out, err io.Writer
}

// NewCommand builds the nsprov command tree.
func NewCommand(s streams) *cobra.Command {
	root := &cobra.Command{
		Use:           "nsprov",
		Short:         "Namespace self-service: admission policies and provisioning for annotated Namespaces",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(s.in)
	root.SetOut(s.out)
	root.SetErr(s.err)
	root.AddCommand(newServeCommand(s), newPolicyCommand(s), newAuditCommand(s), newPluginCommand(s), newWebhooksCommand(s), newVersionCommand(s))
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError(err) })
	return root
}

// Main runs the command line and returns the process exit code.
func Main(args []string, in io.Reader, out, errOut io.Writer) int {
	return MainAs("nsprov", args, in, out, errOut)
}

// MainAs runs the command line of the program invoked as argv0 and returns
// the process exit code: invoked as kubectl-nsprov, the binary is the kubectl
// plugin (NewPluginCommand), else nsprov (NewCommand).
func MainAs(argv0 string, args []string, in io.Reader, out, errOut io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return RunAs(ctx, argv0, args, in, out, errOut)
}

// Run runs the command line with a context of the caller's, for tests and
// tools that embed nsprov, and returns the exit code.
func Run(ctx context.Context, args []string, in io.Reader, out, errOut io.Writer) int {
	return RunAs(ctx, "nsprov", args, in, out, errOut)
}

// RunAs runs the command line like Run, as the program argv0 (see MainAs).
func RunAs(ctx context.Context, argv0 string, args []string, in io.Reader, out, errOut io.Writer) int {
	s := streams{in: in, out: out, err: errOut}
	cmd, prefix := NewCommand(s), "nsprov"
	if isPlugin(argv0) {
		cmd, prefix = NewPluginCommand(s), "kubectl nsprov"
	}
	return execute(ctx, cmd, prefix, args, s)
}

// run runs nsprov's command line.
func run(ctx context.Context, args []string, s streams) int {
	return execute(ctx, NewCommand(s), "nsprov", args, s)
}

// execute runs cmd with args and returns the exit code; errors are printed
// after prefix.
func execute(ctx context.Context, cmd *cobra.Command, prefix string, args []string, s streams) int {
	cmd.SetArgs(args)
	err := cmd.ExecuteContext(ctx)
	if err == nil {
		return ExitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.err != nil {
			fmt.Fprintf(s.err, "%s: %v\n", prefix, ee.err)
		}
		return ee.code
	}
	fmt.Fprintf(s.err, "%s: %v\n", prefix, err)
	return ExitBadUsage
}
