package devenv

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// controlPlane are the command names of the processes envtest starts.
var controlPlane = map[string]bool{"etcd": true, "kube-apiserver": true}

// A Process is a running program, identified by its PID and its command line
// (so that a PID the kernel has since given to another program is left alone).
type Process struct {
	PID     int
	Cmdline string
}

// Children lists the control-plane processes whose parent is the process
// parent.
func Children(parent int) ([]Process, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("listing processes: %w", err)
	}
	var out []Process
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		name, ppid, ok := stat(pid)
		if !ok || ppid != parent || !controlPlane[name] {
			continue
		}
		if cmd, ok := cmdline(pid); ok {
			out = append(out, Process{PID: pid, Cmdline: cmd})
		}
	}
	return out, nil
}

// stat reads the command name and parent PID of a process.
func stat(pid int) (name string, ppid int, ok bool) {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return "", 0, false
	}
	// pid (comm) state ppid ...; comm may hold spaces and parentheses.
	open, closing := bytes.IndexByte(data, '('), bytes.LastIndexByte(data, ')')
	if open < 0 || closing < open {
		return "", 0, false
	}
	fields := strings.Fields(string(data[closing+1:]))
	if len(fields) < 2 {
		return "", 0, false
	}
	ppid, err = strconv.Atoi(fields[1])
	return string(data[open+1 : closing]), ppid, err == nil
}

// Alive tells whether a process runs; a zombie, which has no command line,
// does not.
func Alive(pid int) bool {
	_, ok := cmdline(pid)
	return ok
}

func cmdline(pid int) (string, bool) {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil || len(data) == 0 {
		return "", false
	}
	return strings.TrimRight(strings.ReplaceAll(string(data), "\x00", " "), " "), true
}

// recordProcesses writes the control-plane children to path, one
// "PID<TAB>command line" per line.
func recordProcesses(path string) error {
	procs, err := Children(os.Getpid())
	if err != nil {
		return err
	}
	var b strings.Builder
	for _, p := range procs {
		fmt.Fprintf(&b, "%d\t%s\n", p.PID, p.Cmdline)
	}
	return os.WriteFile(path, []byte(b.String()), 0o600)
}

// stopStale kills the processes a killed earlier run recorded that still run
// the same command line, and removes its temporary files.
func stopStale(stateDir string) error {
	path := filepath.Join(stateDir, processesFile)
	f, err := os.Open(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err == nil {
		var stale []int
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			pidText, cmd, ok := strings.Cut(sc.Text(), "\t")
			pid, err := strconv.Atoi(pidText)
			if !ok || err != nil {
				continue
			}
			if now, alive := cmdline(pid); alive && now == cmd {
				stale = append(stale, pid)
			}
		}
		f.Close()
		for _, pid := range stale {
			fmt.Fprintf(os.Stderr, "nsprov dev: stopping process %d left by an earlier run\n", pid)
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		for _, pid := range stale {
			waitGone(pid)
		}
	}
	for _, name := range []string{processesFile, tmpDir, KubeconfigFile} {
		if err := os.RemoveAll(filepath.Join(stateDir, name)); err != nil {
			return fmt.Errorf("removing what an earlier run left: %w", err)
		}
	}
	return nil
}

// waitGone waits up to ten seconds for a killed process to disappear.
func waitGone(pid int) {
	for range 100 {
		if _, alive := cmdline(pid); !alive {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}
