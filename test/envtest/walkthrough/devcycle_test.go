package walkthrough

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nsprov/nsprov/test/envtest"
	"github.com/nsprov/nsprov/test/envtest/devenv"
)

// TestDevStartsAndStopsCleanly runs the `make dev` program three times in one
// state directory: stopped with SIGINT (Ctrl-C), killed outright, then
// stopped with SIGTERM. Each stop must leave no control-plane process and no
// temporary file, and the start after the kill must clean up what the killed
// run left.
func TestDevStartsAndStopsCleanly(t *testing.T) {
	root, err := envtest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	assets, err := envtest.AssetsDir()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "nsprov-dev")
	build := exec.Command("go", "build", "-o", bin, "./test/envtest/cmd/nsprov-dev")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building nsprov-dev: %v\n%s", err, out)
	}
	state := t.TempDir()

	var leftover []int
	for i, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGKILL, syscall.SIGTERM} {
		cmd := exec.Command(bin, "--state-dir", state)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "KUBEBUILDER_ASSETS="+assets)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = cmd.Stdout
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		out := waitReady(t, cmd, stdout)
		if i > 0 && sig != syscall.SIGKILL && len(leftover) > 0 {
			for _, pid := range leftover {
				if !strings.Contains(out, "stopping process "+strconv.Itoa(pid)+" left by an earlier run") {
					t.Errorf("run %d did not report stopping process %d of the killed run; it printed:\n%s", i+1, pid, out)
				}
			}
		}
		for _, pid := range leftover {
			if devenv.Alive(pid) {
				t.Errorf("run %d: process %d of the killed run still runs", i+1, pid)
			}
		}
		leftover = nil
		children := childrenOf(t, cmd.Process.Pid)
		if len(children) != 2 {
			t.Fatalf("run %d: %d control-plane processes, want etcd and kube-apiserver: %v", i+1, len(children), children)
		}
		if _, err := os.Stat(filepath.Join(state, devenv.KubeconfigFile)); err != nil {
			t.Errorf("run %d: no kubeconfig while running: %v", i+1, err)
		}

		if err := cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		_ = cmd.Wait()
		if sig == syscall.SIGKILL {
			// Nothing could clean up; the next run must.
			leftover = children
			continue
		}
		for _, pid := range children {
			if devenv.Alive(pid) {
				t.Errorf("run %d stopped with %v, but its process %d still runs", i+1, sig, pid)
			}
		}
		entries, err := os.ReadDir(state)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if e.Name() != devenv.LogFile && e.Name() != devenv.DecisionLogFile {
				t.Errorf("run %d stopped with %v and left %s in the state directory", i+1, sig, e.Name())
			}
		}
	}
}

// waitReady reads the program's output until it says "nsprov dev ready",
// and returns what it printed.
func waitReady(t *testing.T, cmd *exec.Cmd, stdout io.Reader) string {
	t.Helper()
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var b strings.Builder
	timeout := time.After(3 * time.Minute)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("nsprov-dev exited before it was ready; it printed:\n%s", b.String())
			}
			b.WriteString(l + "\n")
			if strings.Contains(l, "nsprov dev ready") {
				// Keep draining so the program never blocks on a full pipe.
				go func() {
					for range lines {
					}
				}()
				return b.String()
			}
		case <-timeout:
			_ = cmd.Process.Kill()
			t.Fatalf("nsprov-dev was not ready in 3 minutes; it printed:\n%s", b.String())
		}
	}
}

// childrenOf lists the PIDs of the control-plane processes whose parent is pid.
func childrenOf(t *testing.T, pid int) []int {
	t.Helper()
	procs, err := devenv.Children(pid)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]int, len(procs))
	for i, p := range procs {
		out[i] = p.PID
	}
	return out
}
