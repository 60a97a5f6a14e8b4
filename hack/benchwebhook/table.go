package main

import (
	"fmt"
	"io"
	"slices"
	"time"
)

func median[T float64 | time.Duration](v []T) T {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// printTable writes the results as a Markdown table, each figure the median
// of the rounds, with the ratios to the always-allow server of the same path.
func printTable(w io.Writer, o options, results []*result, notes []string) {
	fmt.Fprintf(w, "Machine: %s\n", machine())
	fmt.Fprintf(w, "Each figure is the median of %d rounds of %s; %d distinct requests per path; throughput with %d keep-alive clients; latency in an open loop at %d requests/s; CPU is the server process's (user and system, garbage collection included) per request.\n\n",
		o.rounds, o.duration, o.corpus, o.concurrency, o.rate)
	fmt.Fprintf(w, "| path | server | decision cache | requests/s | x floor | CPU per request | p50 at %d/s | p99 at %d/s | p99 x floor |\n", o.rate, o.rate)
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|---|---|")
	var floor *result
	for _, r := range results {
		if r.cache == "-" {
			floor = r
		}
		rps, p99 := median(r.rps), median(r.p99)
		fmt.Fprintf(w, "| %s | %s | %s | %.0f | %.2f | %s | %s | %s | %.2f |\n",
			r.path, r.server, r.cache, rps, rps/median(floor.rps),
			micros(median(r.cpuPerReq)), millis(median(r.p50)), millis(p99), float64(p99)/float64(median(floor.p99)))
	}
	fmt.Fprintln(w)
	for _, n := range notes {
		fmt.Fprintf(w, "- %s\n", n)
	}
}

func micros(d time.Duration) string {
	return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
}
func millis(d time.Duration) string {
	return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
}
