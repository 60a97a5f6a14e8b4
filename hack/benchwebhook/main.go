// Command benchwebhook measures `nsprov serve` against the floor of the
// framework it is built on: a controller-runtime webhook server whose handler
// allows everything. Both run as processes of their own on the same machine,
// over real TLS with keep-alive connections, and are driven alternately with
// the same corpus of distinct AdmissionReviews (allowed and denied, CREATE and
// UPDATE), so that a figure of nsprov is always read beside the floor's from
// the same minute of the same run.
//
// `make bench-webhook` runs it. `nsprov serve` needs an API server (its
// manager, the Events of denials, the audit report), so a kube-apiserver and
// etcd from KUBEBUILDER_ASSETS run beside it; the provisioning controller is
// off. The table goes to standard output, progress to standard error.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// options are the flags of the benchmark.
type options struct {
	// nsprov is the `nsprov` binary to measure (make build's bin/nsprov).
	nsprov string
	// concurrency is the number of clients of the throughput runs.
	concurrency int
	// duration is the length of one throughput or latency run.
	duration time.Duration
	// rate is the request rate of the latency runs, per second.
	rate int
	// rounds is how many times each measurement is repeated, alternating
	// between the servers; the table shows the median.
	rounds int
	// corpus is the number of distinct requests of each path.
	corpus int
	// evaluator is passed to `nsprov serve --policy-evaluator`.
	evaluator string
	// profile is a file prefix; when set, CPU and allocation profiles of
	// nsprov (cache off) are taken during its first throughput run of each
	// path.
	profile string
}

func (o *options) addFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.nsprov, "nsprov", "bin/nsprov", "the nsprov binary to measure")
	fs.IntVar(&o.concurrency, "concurrency", 8, "clients of the throughput runs")
	fs.DurationVar(&o.duration, "duration", 5*time.Second, "length of each throughput or latency run")
	fs.IntVar(&o.rate, "rate", 500, "requests per second of the latency runs")
	fs.IntVar(&o.rounds, "rounds", 3, "repetitions of each measurement (the table shows the median)")
	fs.IntVar(&o.corpus, "corpus", 2000, "distinct requests of each path")
	fs.StringVar(&o.evaluator, "policy-evaluator", "compiled", "nsprov's --policy-evaluator")
	fs.StringVar(&o.profile, "profile", "", "file prefix for CPU and allocation profiles of nsprov (cache off) under load, e.g. bin/profile (read with go tool pprof)")
}

func (o *options) validate() error {
	switch {
	case o.concurrency < 1:
		return fmt.Errorf("--concurrency %d must be at least 1", o.concurrency)
	case o.duration < time.Second:
		return fmt.Errorf("--duration %s is too short to measure; use at least 1s", o.duration)
	case o.rate < 1:
		return fmt.Errorf("--rate %d must be at least 1", o.rate)
	case o.rounds < 1:
		return fmt.Errorf("--rounds %d must be at least 1", o.rounds)
	case o.corpus < 10:
		return fmt.Errorf("--corpus %d is too small; use at least 10", o.corpus)
	}
	if _, err := os.Stat(o.nsprov); err != nil {
		return fmt.Errorf("--nsprov: %w (run make build first)", err)
	}
	return nil
}

func main() {
	// The floor server is this binary started again with "floor".
	if len(os.Args) > 1 && os.Args[1] == floorCommand {
		if err := runFloor(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "floor:", err)
			os.Exit(1)
		}
		return
	}
	var o options
	fs := flag.NewFlagSet("benchwebhook", flag.ExitOnError)
	o.addFlags(fs)
	_ = fs.Parse(os.Args[1:])
	if err := o.validate(); err != nil {
		fmt.Fprintln(os.Stderr, "benchwebhook:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "benchwebhook:", err)
		os.Exit(1)
	}
}
