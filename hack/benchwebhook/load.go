package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
)

// client posts AdmissionReviews to one server over keep-alive HTTPS/1.1
// connections, as many as the load needs.
type client struct {
	http *http.Client
	base string
}

func newClient(caPEM []byte, port, conns int) (*client, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("no certificate in the serving CA")
	}
	tr := &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12},
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		DisableCompression:  true,
		IdleConnTimeout:     time.Minute,
	}
	return &client{http: &http.Client{Transport: tr, Timeout: 10 * time.Second}, base: fmt.Sprintf("https://127.0.0.1:%d", port)}, nil
}

var allowedTrue = []byte(`"allowed":true`)

// post sends one review and reports whether it was allowed.
func (c *client) post(ctx context.Context, path string, body []byte) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(body))
	if err != nil {
		return false, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return false, err
	}
	defer func() { _ = resp.Body.Close() }()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return false, err
	}
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("%s answered %d: %s", path, resp.StatusCode, out)
	}
	return bytes.Contains(out, allowedTrue), nil
}

// review sends one review and returns the whole response.
func (c *client) review(ctx context.Context, path string, body []byte) (*admissionv1.AdmissionResponse, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	var r admissionv1.AdmissionReview
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, fmt.Errorf("%s: decoding the answer: %w", path, err)
	}
	if r.Response == nil {
		return nil, fmt.Errorf("%s: answer without a response", path)
	}
	return r.Response, nil
}

// checker compares answers with the corpus's expectations; an always-allow
// server is not checked.
type checker struct {
	check bool
	wrong atomic.Int64
	errs  atomic.Int64
	first atomic.Value
}

func (k *checker) record(allowed bool, err error, want request) {
	switch {
	case err != nil:
		k.errs.Add(1)
		k.first.CompareAndSwap(nil, err.Error())
	case k.check && allowed != want.allowed:
		k.wrong.Add(1)
	}
}

func (k *checker) err() error {
	if n := k.errs.Load(); n > 0 {
		return fmt.Errorf("%d requests failed, the first: %v", n, k.first.Load())
	}
	if n := k.wrong.Load(); n > 0 {
		return fmt.Errorf("%d answers differ from the corpus's expected decision", n)
	}
	return nil
}

// throughput runs conc clients that send the corpus in a loop, each from its
// own offset, for d, and returns the completed requests per second.
func throughput(ctx context.Context, c *client, path string, corpus []request, conc int, d time.Duration, check bool) (float64, int64, error) {
	var done atomic.Int64
	k := &checker{check: check}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w * len(corpus) / conc; ctx.Err() == nil; i++ {
				r := corpus[i%len(corpus)]
				allowed, err := c.post(ctx, path, r.body)
				if ctx.Err() != nil {
					return
				}
				k.record(allowed, err, r)
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	n := done.Load()
	return float64(n) / time.Since(start).Seconds(), n, k.err()
}

// latencies sends the corpus at a fixed rate for d (an open loop: each
// request's latency counts from when it was due, so a server that falls
// behind shows it) and returns the 50th and 99th percentiles.
func latencies(ctx context.Context, c *client, path string, corpus []request, rate int, d time.Duration, check bool) (p50, p99 time.Duration, err error) {
	n := int(d.Seconds() * float64(rate))
	interval := time.Second / time.Duration(rate)
	due := make(chan int, n)
	lat := make([]time.Duration, n)
	k := &checker{check: check}
	start := time.Now()
	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range due {
				at := start.Add(time.Duration(i) * interval)
				if wait := time.Until(at); wait > 0 {
					time.Sleep(wait)
				}
				r := corpus[i%len(corpus)]
				allowed, err := c.post(ctx, path, r.body)
				lat[i] = time.Since(at)
				k.record(allowed, err, r)
			}
		}()
	}
	for i := range n {
		due <- i
	}
	close(due)
	wg.Wait()
	slices.Sort(lat)
	return lat[n/2], lat[n*99/100], k.err()
}
