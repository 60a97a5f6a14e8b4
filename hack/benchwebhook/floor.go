package main

import (
	"context"
	"flag"
	"os/signal"
	"syscall"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// floorCommand starts the always-allow server.
const floorCommand = "floor"

// runFloor serves nsprov's two webhook paths with controller-runtime's
// webhook server, as nsprov does, and a handler that allows every request
// without reading it: what a webhook costs before it decides anything.
func runFloor(args []string) error {
	fs := flag.NewFlagSet(floorCommand, flag.ContinueOnError)
	certDir := fs.String("cert-dir", "", "directory with tls.crt and tls.key")
	port := fs.Int("port", 0, "port to listen on (127.0.0.1)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctrl.SetLogger(discardLogger())
	srv := webhook.NewServer(webhook.Options{Host: "127.0.0.1", Port: *port, CertDir: *certDir})
	allow := admission.HandlerFunc(func(context.Context, admission.Request) admission.Response {
		return admission.Allowed("")
	})
	for _, path := range []string{mutatePath, validatePath} {
		srv.Register(path, &webhook.Admission{Handler: allow})
	}
	return srv.Start(ctx)
}
