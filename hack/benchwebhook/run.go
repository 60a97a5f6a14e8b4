package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/go-logr/logr"
	crenvtest "sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/nsprov/nsprov/test/envtest"
)

// server is one of the measured servers and its client.
type server struct {
	label  string
	cache  string
	proc   *process
	client *client
	// check is whether its answers are compared with the corpus's.
	check bool
}

// result is one row of the table.
type result struct {
	path, server, cache string
	rps                 []float64
	cpuPerReq           []time.Duration
	p50, p99            []time.Duration
}

func discardLogger() logr.Logger { return logr.Discard() }

func run(ctx context.Context, o options) error {
	dir, err := os.MkdirTemp("", "benchwebhook-")
	if err != nil {
		return err
	}
	defer func() { _ = os.RemoveAll(dir) }()

	progress("starting kube-apiserver and etcd (KUBEBUILDER_ASSETS)")
	cp := &crenvtest.Environment{}
	if _, err := cp.Start(); err != nil {
		return fmt.Errorf("starting the control plane: %w", err)
	}
	defer func() { _ = cp.Stop() }()
	user, err := cp.AddUser(crenvtest.User{Name: "system:serviceaccount:nsprov-system:nsprov", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return err
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return err
	}
	kcPath := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kcPath, kc, 0o600); err != nil {
		return err
	}
	certDir := filepath.Join(dir, "certs")
	if err := os.Mkdir(certDir, 0o700); err != nil {
		return err
	}
	caPEM, _, err := envtest.ServingCert(certDir)
	if err != nil {
		return err
	}

	self, err := os.Executable()
	if err != nil {
		return err
	}
	var servers []*server
	defer func() {
		for _, s := range servers {
			s.proc.stop()
		}
	}()
	port, err := envtest.FreePort()
	if err != nil {
		return err
	}
	progress("starting the always-allow controller-runtime server")
	floor, err := start("floor", filepath.Join(dir, "floor.log"), self, floorCommand, "--cert-dir", certDir, "--port", fmt.Sprint(port))
	if err != nil {
		return err
	}
	fs := &server{label: "always-allow (floor)", cache: "-", proc: floor}
	servers = append(servers, fs)
	if err := waitReady(ctx, floor, tlsUp(fmt.Sprintf("127.0.0.1:%d", port))); err != nil {
		return err
	}
	if fs.client, err = newClient(caPEM, port, 64); err != nil {
		return err
	}
	for _, cache := range []struct{ label, flag string }{{"off", "0"}, {"on", ""}} {
		s, err := startNsprov(ctx, o, dir, kcPath, certDir, caPEM, cache.label, cache.flag)
		if s != nil {
			servers = append(servers, s)
		}
		if err != nil {
			return err
		}
	}
	cacheOff := servers[1]

	progress("building the corpus: %d distinct requests per path", o.corpus)
	corpora, err := buildCorpora(ctx, cacheOff.client, o.corpus)
	if err != nil {
		return err
	}
	for _, path := range []string{mutatePath, validatePath} {
		allowed := 0
		for _, r := range corpora[path] {
			if r.allowed {
				allowed++
			}
		}
		progress("%s: %d allowed, %d denied", path, allowed, len(corpora[path])-allowed)
	}

	progress("warming up (fills the decision cache of the cache-on server)")
	for _, s := range servers {
		for _, path := range []string{mutatePath, validatePath} {
			if _, _, err := throughput(ctx, s.client, path, corpora[path], o.concurrency, 2*time.Second, s.check); err != nil {
				return fmt.Errorf("%s, %s: %w", s.label, path, err)
			}
		}
	}

	var results []*result
	for _, path := range []string{validatePath, mutatePath} {
		for _, s := range servers {
			results = append(results, &result{path: path, server: s.label, cache: s.cache})
		}
	}
	row := func(path string, i int) *result {
		return results[slices.IndexFunc(results, func(r *result) bool { return r.path == path })+i]
	}
	for round := range o.rounds {
		for _, path := range []string{validatePath, mutatePath} {
			// Alternate the servers so that each figure is taken beside
			// the floor's, in the same minute.
			for i, s := range servers {
				progress("round %d/%d, %s, %s: throughput with %d clients", round+1, o.rounds, path, s.label, o.concurrency)
				before, err := s.proc.cpu()
				if err != nil {
					return err
				}
				var profiled chan error
				if o.profile != "" && round == 0 && s.cache == "off" {
					profiled = make(chan error, 1)
					go func() { profiled <- s.proc.profile(ctx, o.profile+"-"+strings.Trim(path, "/"), o.duration) }()
				}
				rps, n, err := throughput(ctx, s.client, path, corpora[path], o.concurrency, o.duration, s.check)
				if profiled != nil {
					if err := <-profiled; err != nil {
						return fmt.Errorf("profiling %s: %w", s.label, err)
					}
				}
				if err != nil {
					return fmt.Errorf("%s, %s: %w", s.label, path, err)
				}
				after, err := s.proc.cpu()
				if err != nil {
					return err
				}
				r := row(path, i)
				r.rps = append(r.rps, rps)
				r.cpuPerReq = append(r.cpuPerReq, (after-before)/time.Duration(n))
				progress("round %d/%d, %s, %s: latency at %d requests/s", round+1, o.rounds, path, s.label, o.rate)
				p50, p99, err := latencies(ctx, s.client, path, corpora[path], o.rate, o.duration, s.check)
				if err != nil {
					return fmt.Errorf("%s, %s: %w", s.label, path, err)
				}
				r.p50, r.p99 = append(r.p50, p50), append(r.p99, p99)
			}
		}
	}

	var heap []string
	for _, s := range servers[1:] {
		inuse, ok, err := s.proc.metric("go_memstats_heap_inuse_bytes")
		if err != nil || !ok {
			return fmt.Errorf("reading the heap of %s: %v (exported: %v)", s.label, err, ok)
		}
		line := fmt.Sprintf("nsprov, cache %s: heap in use %.1f MiB", s.cache, inuse/(1<<20))
		if b, ok, _ := s.proc.metric("nsprov_policy_decision_cache_bytes"); ok {
			line += fmt.Sprintf(", of which the decision cache %.1f MiB", b/(1<<20))
		}
		heap = append(heap, line)
	}
	printTable(os.Stdout, o, results, heap)
	return nil
}

// startNsprov starts `nsprov serve` as the chart runs it, without the
// provisioning controller; cacheFlag "" keeps the default decision cache.
func startNsprov(ctx context.Context, o options, dir, kubeconfig, certDir string, caPEM []byte, label, cacheFlag string) (*server, error) {
	var ports [3]int
	for i := range ports {
		p, err := envtest.FreePort()
		if err != nil {
			return nil, err
		}
		ports[i] = p
	}
	args := []string{"serve",
		"--kubeconfig", kubeconfig,
		"--cert-dir", certDir,
		"--webhook-host", "127.0.0.1",
		"--webhook-port", fmt.Sprint(ports[0]),
		"--metrics-bind-address", fmt.Sprintf("127.0.0.1:%d", ports[1]),
		"--health-probe-bind-address", fmt.Sprintf("127.0.0.1:%d", ports[2]),
		"--controller=false",
		"--leader-election-namespace", "default",
		"--policy-evaluator", o.evaluator,
		// The chart's default: every decision is a JSON line on stdout
		// (here into a file, in a pod into the container log).
		"--decision-log", "stdout",
	}
	if o.profile != "" {
		args = append(args, "--enable-pprof")
	}
	if cacheFlag != "" {
		args = append(args, "--decision-cache-size", cacheFlag)
	}
	progress("starting nsprov serve, decision cache %s", label)
	p, err := start("nsprov, cache "+label, filepath.Join(dir, "nsprov-cache-"+label+".log"), o.nsprov, args...)
	if err != nil {
		return nil, err
	}
	p.metrics = fmt.Sprintf("127.0.0.1:%d", ports[1])
	s := &server{label: "nsprov serve", cache: label, proc: p, check: true}
	if err := waitReady(ctx, p, httpOK(fmt.Sprintf("http://127.0.0.1:%d/readyz", ports[2]))); err != nil {
		log, _ := os.ReadFile(filepath.Join(dir, "nsprov-cache-"+label+".log"))
		return s, fmt.Errorf("%w\n%s", err, tail(string(log), 20))
	}
	if s.client, err = newClient(caPEM, ports[0], 64); err != nil {
		return s, err
	}
	return s, nil
}

// buildCorpora asks nsprov for the mutation of each request, derives the
// validating review from it, and records the decisions every later answer
// must repeat.
func buildCorpora(ctx context.Context, c *client, n int) (map[string][]request, error) {
	bodies, err := mutationCorpus(n)
	if err != nil {
		return nil, err
	}
	out := map[string][]request{}
	for _, b := range bodies {
		m, err := c.review(ctx, mutatePath, b)
		if err != nil {
			return nil, err
		}
		out[mutatePath] = append(out[mutatePath], request{body: b, allowed: m.Allowed})
		vb, err := validationReview(b, m)
		if err != nil {
			return nil, err
		}
		v, err := c.review(ctx, validatePath, vb)
		if err != nil {
			return nil, err
		}
		out[validatePath] = append(out[validatePath], request{body: vb, allowed: v.Allowed})
	}
	if all := out[validatePath]; !slices.ContainsFunc(all, func(r request) bool { return r.allowed }) ||
		!slices.ContainsFunc(all, func(r request) bool { return !r.allowed }) {
		return nil, errors.New("the validation corpus must hold allowed and denied requests; did the policy change?")
	}
	return out, nil
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

func tail(s string, lines int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(l) > lines {
		l = l[len(l)-lines:]
	}
	return strings.Join(l, "\n")
}

// machine describes where the figures were taken.
func machine() string {
	model := "unknown CPU"
	if raw, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(raw), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	return fmt.Sprintf("%d CPUs (%s), %s/%s, %s", runtime.NumCPU(), model, runtime.GOOS, runtime.GOARCH, runtime.Version())
}
