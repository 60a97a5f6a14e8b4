package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// process is a server under measurement.
type process struct {
	name string
	cmd  *exec.Cmd
	// metrics is the address of its Prometheus endpoint, if it has one.
	metrics string
}

// start runs a server in a process group of its own that dies with the
// benchmark, its output to logFile.
func start(name string, logFile string, bin string, args ...string) (*process, error) {
	f, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	go func() { _ = cmd.Wait(); _ = f.Close() }()
	return &process{name: name, cmd: cmd}, nil
}

func (p *process) stop() {
	if p == nil || p.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	time.Sleep(200 * time.Millisecond)
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
}

// cpu is the CPU time the process has used, user and system, garbage
// collection included.
func (p *process) cpu() (time.Duration, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces; the fields after it do not.
	s := string(raw)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	// utime and stime are the 14th and 15th fields, the 12th and 13th after
	// the name and state; they count clock ticks of 1/100 s on Linux.
	var ticks int64
	for _, f := range fields[11:13] {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("reading /proc stat of %s: %w", p.name, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond, nil
}

// metric reads one unlabelled sample from the process's metrics endpoint;
// ok is false when it does not export it.
func (p *process) metric(name string) (float64, bool, error) {
	if p.metrics == "" {
		return 0, false, nil
	}
	resp, err := http.Get("http://" + p.metrics + "/metrics")
	if err != nil {
		return 0, false, err
	}
	defer func() { _ = resp.Body.Close() }()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, found := strings.CutPrefix(line, name+" "); found {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return v, err == nil, err
		}
	}
	return 0, false, sc.Err()
}

// waitReady waits until ready answers without error or the process exits.
func waitReady(ctx context.Context, p *process, ready func() error) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		err := ready()
		if err == nil {
			return nil
		}
		if p.cmd.ProcessState != nil {
			return fmt.Errorf("%s exited: %s", p.name, p.cmd.ProcessState)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %w", p.name, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// httpOK is a readiness check of a plain HTTP endpoint.
func httpOK(url string) func() error {
	return func() error {
		resp, err := http.Get(url)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", url, resp.Status)
		}
		return nil
	}
}

// tlsUp is a readiness check of a TLS listener.
func tlsUp(addr string) func() error {
	return func() error {
		c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // only checks that the port answers
		if err != nil {
			return err
		}
		return c.Close()
	}
}

// profile takes a CPU profile of the process for most of d, then an
// allocation profile, into prefix.cpu.pprof and prefix.allocs.pprof.
func (p *process) profile(ctx context.Context, prefix string, d time.Duration) error {
	seconds := max(int(d.Seconds())-1, 1)
	for _, prof := range []struct{ url, file string }{
		{fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", p.metrics, seconds), prefix + ".cpu.pprof"},
		{fmt.Sprintf("http://%s/debug/pprof/allocs", p.metrics), prefix + ".allocs.pprof"},
	} {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, prof.url, nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		body, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("%s: %s", prof.url, resp.Status)
		}
		if err := os.WriteFile(prof.file, body, 0o644); err != nil {
			return err
		}
		progress("wrote %s", prof.file)
	}
	return nil
}
