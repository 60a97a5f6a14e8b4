// Package bounds measures what large admission requests cost `nsprov serve`:
// it sends 2,000 requests with 256 KiB annotations (each value distinct) in
// 1 MiB bodies to a real server and asserts that the process's live heap
// stays under a stated bound and that a normal request is still answered
// correctly afterwards. It prints its figures; it asserts memory and
// answers, never timing.
package bounds

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"

	"github.com/nsprov/nsprov/cmd/webhook/app"
	"github.com/nsprov/nsprov/test/envtest"
)

const (
	requests       = 2000
	annotationSize = 256 << 10
	bodySize       = 1 << 20
	workers        = 4
	// heapGrowthBound is the most the live heap (after a GC) may grow over
	// the server's heap before the first request: the decision cache's
	// default 16 MiB, the audit queue of truncated results, and headroom for
	// the requests in flight.
	heapGrowthBound = 64 << 20
	// messageBound is the longest denial message nsprov may answer.
	messageBound = 8 << 10
)

// lineCounter is the decision log: it keeps no lines, only their count and
// the longest one's length.
type lineCounter struct {
	mu            sync.Mutex
	lines, cur    int
	longest, size int
}

func (c *lineCounter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.size += len(p)
	for _, b := range p {
		c.cur++
		if b == '\n' {
			c.lines++
			c.longest = max(c.longest, c.cur)
			c.cur = 0
		}
	}
	return len(p), nil
}

func (c *lineCounter) figures() (lines, longest, size int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lines, c.longest, c.size
}

func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// filler is n bytes of text that differs for every seed.
func filler(seed, n int) string {
	var sb strings.Builder
	sb.Grow(n + 16)
	for i := 0; sb.Len() < n; i++ {
		fmt.Fprintf(&sb, "%x.%x-", seed, i)
	}
	return sb.String()[:n]
}

// bigFeatures is a features annotation of n bytes listing distinct unknown
// features: without a limit in the policy, one violation each.
func bigFeatures(seed, n int) string {
	var sb strings.Builder
	for i := 0; sb.Len() < n; i++ {
		fmt.Fprintf(&sb, "f%x-%x,", seed, i)
	}
	return strings.TrimSuffix(sb.String()[:n], ",")
}

func review(t *testing.T, uid string, op admissionv1.Operation, object map[string]any) []byte {
	t.Helper()
	raw, err := json.Marshal(object)
	if err != nil {
		t.Fatal(err)
	}
	ar := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       types.UID("bounds-" + uid),
			Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Namespace"},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "namespaces"},
			Name:      object["metadata"].(map[string]any)["name"].(string),
			Operation: op,
			UserInfo:  authenticationv1.UserInfo{Username: "alice", Groups: []string{"team-payments"}},
			Object:    k8sruntime.RawExtension{Raw: raw},
		},
	}
	b, err := json.Marshal(ar)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// largeRequest is request i: a 256 KiB annotation of its own and padding
// that makes the body about 1 MiB. Every 400th request also carries a
// 256 KiB features annotation, and every 7th a 256 KiB team.
func largeRequest(t *testing.T, i int) []byte {
	annotations := map[string]any{
		"nsprov.io/team": "payments", "nsprov.io/environment": "development",
		"example.com/notes": filler(i, annotationSize),
	}
	if i%400 == 0 {
		annotations["nsprov.io/features"] = bigFeatures(i, annotationSize)
	}
	if i%7 == 3 {
		annotations["nsprov.io/team"] = filler(-i, annotationSize)
	}
	pad := bodySize - 2*annotationSize
	if i%400 == 0 || i%7 == 3 {
		pad = bodySize - 3*annotationSize
	}
	object := map[string]any{
		"apiVersion": "v1", "kind": "Namespace",
		"metadata": map[string]any{
			"name":          fmt.Sprintf("bounds-%04d-dev", i),
			"annotations":   annotations,
			"managedFields": []any{map[string]any{"manager": filler(i+requests, pad)}},
		},
	}
	op := admissionv1.Create
	return review(t, fmt.Sprint(i), op, object)
}

func TestLargeRequestsStayBounded(t *testing.T) {
	assets, err := envtest.AssetsDir()
	if err != nil {
		t.Fatal(err)
	}
	cp, err := envtest.NewControlPlane(assets)
	if err != nil {
		t.Fatal(err)
	}
	// Only OpenReports' CRDs: serve runs without the controller here, and
	// Argo's large CRDs take minutes to install on a busy machine.
	reports, err := envtest.ModuleDir("github.com/openreports/reports-api")
	if err != nil {
		t.Fatal(err)
	}
	cp.CRDInstallOptions.Paths = []string{filepath.Join(reports, "config", "crd")}
	// Stopped even when starting fails half way (the CRDs not installed in
	// time on a busy machine), so no API server or etcd is left behind.
	defer func() { _ = cp.Stop() }()
	if _, err := cp.Start(); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	certDir := filepath.Join(dir, "certs")
	if err := os.Mkdir(certDir, 0o700); err != nil {
		t.Fatal(err)
	}
	caPEM, _, err := envtest.ServingCert(certDir)
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig, err := envtest.UserKubeconfig(cp, "system:serviceaccount:nsprov-system:nsprov", "system:masters")
	if err != nil {
		t.Fatal(err)
	}
	kcPath := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kcPath, kubeconfig, 0o600); err != nil {
		t.Fatal(err)
	}
	ports := make([]int, 3)
	for i := range ports {
		if ports[i], err = envtest.FreePort(); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	decisionLog := &lineCounter{}
	var errOut envtest.SyncBuffer
	exited := make(chan int, 1)
	go func() {
		exited <- app.Run(ctx, []string{"serve",
			"--kubeconfig", kcPath,
			"--cert-dir", certDir,
			"--webhook-host", "127.0.0.1",
			"--webhook-port", fmt.Sprint(ports[0]),
			"--metrics-bind-address", fmt.Sprintf("127.0.0.1:%d", ports[1]),
			"--health-probe-bind-address", fmt.Sprintf("127.0.0.1:%d", ports[2]),
			"--leader-election-namespace", "default",
			"--controller=false",
		}, strings.NewReader(""), decisionLog, &errOut)
	}()
	defer func() {
		cancel()
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			t.Errorf("serve did not stop within 30s of the context ending")
		}
	}()
	envtest.Eventually(t, time.Minute, "serve ready", func() error {
		select {
		case code := <-exited:
			t.Fatalf("serve exited with %d\n%s", code, errOut.String())
		default:
		}
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", ports[2]))
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz: %d", resp.StatusCode)
		}
		return nil
	})
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	httpc := &http.Client{
		Timeout:   2 * time.Minute,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, MaxIdleConnsPerHost: workers},
	}
	url := fmt.Sprintf("https://127.0.0.1:%d", ports[0])
	post := func(path string, body []byte) (*admissionv1.AdmissionReview, int, error) {
		resp, err := httpc.Post(url+path, "application/json", bytes.NewReader(body))
		if err != nil {
			return nil, 0, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return nil, 0, err
		}
		var got admissionv1.AdmissionReview
		if err := json.Unmarshal(b, &got); err != nil || got.Response == nil {
			return nil, len(b), fmt.Errorf("status %d, not an AdmissionReview: %.200s", resp.StatusCode, b)
		}
		return &got, len(b), nil
	}
	normal := func(t *testing.T) {
		t.Helper()
		obj := map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{
			"name": "payments-dev", "annotations": map[string]any{"nsprov.io/team": "payments", "nsprov.io/environment": "development"},
		}}
		got, _, err := post("/validate-namespace", review(t, "normal-ok", admissionv1.Create, obj))
		if err != nil {
			t.Fatalf("a normal request: %v", err)
		}
		if !got.Response.Allowed {
			t.Fatalf("a valid namespace request is denied: %+v", got.Response.Result)
		}
		obj["metadata"].(map[string]any)["annotations"].(map[string]any)["nsprov.io/environment"] = "nowhere"
		got, _, err = post("/validate-namespace", review(t, "normal-bad", admissionv1.Create, obj))
		if err != nil {
			t.Fatalf("a normal request: %v", err)
		}
		if got.Response.Allowed || !strings.Contains(got.Response.Result.Message, "environment") {
			t.Fatalf("an invalid environment is not denied with a message about it: %+v", got.Response.Result)
		}
		got, _, err = post("/mutate-namespace", review(t, "normal-mutate", admissionv1.Create, obj))
		if err != nil || !got.Response.Allowed || len(got.Response.Patch) == 0 {
			t.Fatalf("a normal mutation: %v %+v", err, got)
		}
	}
	normal(t)

	base := liveHeap()
	t.Logf("live heap before the large requests: %.1f MiB", mib(base))
	var (
		next, done       atomic.Int64
		longestMessage   atomic.Int64
		longestResponse  atomic.Int64
		denied, answered atomic.Int64
		mu               sync.Mutex
		peak             = base
		failure          error
	)
	fail := func(err error) {
		mu.Lock()
		if failure == nil {
			failure = err
		}
		mu.Unlock()
	}
	failed := func() bool { mu.Lock(); defer mu.Unlock(); return failure != nil }
	start := time.Now()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for !failed() {
				i := int(next.Add(1)) - 1
				if i >= requests {
					return
				}
				path := "/validate-namespace"
				if i%2 == 1 {
					path = "/mutate-namespace"
				}
				got, n, err := post(path, largeRequest(t, i))
				if err != nil {
					fail(fmt.Errorf("request %d to %s: %w", i, path, err))
					return
				}
				answered.Add(1)
				longestResponse.Store(max(longestResponse.Load(), int64(n)))
				if !got.Response.Allowed {
					denied.Add(1)
					if got.Response.Result != nil {
						longestMessage.Store(max(longestMessage.Load(), int64(len(got.Response.Result.Message))))
					}
				}
				if d := done.Add(1); d%100 == 0 {
					h := liveHeap()
					mu.Lock()
					peak = max(peak, h)
					mu.Unlock()
					if d%500 == 0 {
						t.Logf("%d requests in %s: live heap %.1f MiB", d, time.Since(start).Round(time.Second), mib(h))
					}
					if h > base+heapGrowthBound {
						fail(fmt.Errorf("after %d requests the live heap is %.1f MiB, %.1f MiB over the %.1f MiB before them: more than the bound of %d MiB",
							d, mib(h), mib(h-base), mib(base), heapGrowthBound>>20))
						return
					}
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	end := liveHeap()
	lines, longestLine, logSize := decisionLog.figures()
	t.Logf("%d of %d large requests answered (%d denied) in %s; live heap before %.1f MiB, peak %.1f MiB, after %.1f MiB (bound: before + %d MiB)",
		answered.Load(), requests, denied.Load(), elapsed.Round(time.Second), mib(base), mib(max(peak, end)), mib(end), heapGrowthBound>>20)
	t.Logf("longest denial message %d bytes, longest response %d bytes; decision log %d lines, %.1f MiB, longest line %d bytes",
		longestMessage.Load(), longestResponse.Load(), lines, mib(uint64(logSize)), longestLine)
	if failure != nil {
		t.Fatal(failure)
	}
	if end > base+heapGrowthBound {
		t.Errorf("the live heap after the requests is %.1f MiB, more than %.1f MiB + %d MiB", mib(end), mib(base), heapGrowthBound>>20)
	}
	if longestMessage.Load() > messageBound {
		t.Errorf("a denial message is %d bytes long, more than %d", longestMessage.Load(), messageBound)
	}
	normal(t)
}

func mib(n uint64) float64 { return float64(n) / (1 << 20) }
