// Package benchcpu reports, beside a benchmark's wall time, the CPU time the
// process spent per operation (user and system, all threads, so garbage
// collection counts too). On a shared machine wall time also counts the time
// other processes hold the cores; CPU time is what the code itself spent.
// Only benchmarks import it.
package benchcpu

import (
	"syscall"
	"testing"
	"time"
)

// Now is the CPU time the process has used so far; 0 when it cannot be read.
func Now() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// Report reports the CPU time per operation since start (a value of Now
// taken before the benchmark's loop) as cpu-ns/op.
func Report(b *testing.B, start time.Duration) {
	if start == 0 || b.N == 0 {
		return
	}
	b.ReportMetric(float64(Now()-start)/float64(b.N), "cpu-ns/op")
}
