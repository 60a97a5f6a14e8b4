package server

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/nsprov/nsprov/internal/policy"
)

// DefaultLastGoodConfigMap is the default --policy-last-good.
const DefaultLastGoodConfigMap = "nsprov-policy-last-good"

// The last good ConfigMap: its bundle key and annotations.
const (
	// lastGoodKey holds the bundle's files as gzipped JSON (path: content).
	lastGoodKey = "bundle.json.gz"
	// AnnotationPolicyRevision is the saved bundle's revision.
	AnnotationPolicyRevision = "nsprov.io/policy-revision"
	// AnnotationSavedBy and AnnotationSavedAt say which pod saved it, when.
	AnnotationSavedBy = "nsprov.io/saved-by"
	AnnotationSavedAt = "nsprov.io/saved-at"
	// maxLastGoodBytes keeps the ConfigMap under the API's 1 MiB limit.
	maxLastGoodBytes = 900 << 10
)

// lastGoodConfigMap is where the last bundle of --policy-dir that loaded is
// kept in the cluster.
type lastGoodConfigMap struct {
	client    client.Client
	namespace string
	name      string
}

// lastGoodConfigMap returns the ConfigMap of the options, or nil when the
// last good bundle is off: no --policy-dir, no --policy-last-good, or no
// namespace to keep it in.
func (o *PolicyOptions) lastGoodConfigMap(cfg *rest.Config, scheme *runtime.Scheme) (*lastGoodConfigMap, error) {
	ns := o.LastGoodNamespace
	if ns == "" {
		ns = podNamespace()
	}
	if o.Dir == "" || o.LastGood == "" || ns == "" {
		return nil, nil
	}
	// Straight to the API server: a cache would watch every ConfigMap.
	cl, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("creating the client of the last good policy: %w", err)
	}
	return &lastGoodConfigMap{client: cl, namespace: ns, name: o.LastGood}, nil
}

func (c *lastGoodConfigMap) String() string {
	return "ConfigMap " + c.namespace + "/" + c.name
}

// Load reads the last good bundle; policy.ErrNoLastGood when there is none.
func (c *lastGoodConfigMap) Load(ctx context.Context) (*policy.LastGood, error) {
	cm := &corev1.ConfigMap{}
	if err := c.client.Get(ctx, client.ObjectKey{Namespace: c.namespace, Name: c.name}, cm); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("%w in %s", policy.ErrNoLastGood, c)
		}
		return nil, fmt.Errorf("reading %s: %w", c, err)
	}
	rev := cm.Annotations[AnnotationPolicyRevision]
	data, ok := cm.BinaryData[lastGoodKey]
	if rev == "" || !ok {
		return nil, fmt.Errorf("%s has no %s annotation or no %s key; delete it, a replica whose policy loads saves it again", c, AnnotationPolicyRevision, lastGoodKey)
	}
	files, err := decodeFiles(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c, err)
	}
	return &policy.LastGood{
		Files: files, Revision: rev,
		Origin: fmt.Sprintf("%s (revision %s, saved by %s at %s)", c, rev, cm.Annotations[AnnotationSavedBy], cm.Annotations[AnnotationSavedAt]),
	}, nil
}

// Save keeps files, a bundle of revision rev that loaded, unless the
// ConfigMap already holds that revision.
func (c *lastGoodConfigMap) Save(ctx context.Context, rev string, files policy.Files) error {
	data, err := encodeFiles(files)
	if err != nil {
		return err
	}
	if len(data) > maxLastGoodBytes {
		return fmt.Errorf("the bundle is %d bytes compressed, more than the %d a ConfigMap can hold: it is not saved, so a replica that starts while the policy is broken cannot start", len(data), maxLastGoodBytes)
	}
	cm := &corev1.ConfigMap{}
	err = c.client.Get(ctx, client.ObjectKey{Namespace: c.namespace, Name: c.name}, cm)
	switch {
	case apierrors.IsNotFound(err):
		cm = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: c.namespace, Name: c.name}}
	case err != nil:
		return fmt.Errorf("reading %s: %w", c, err)
	case cm.Annotations[AnnotationPolicyRevision] == rev:
		return nil
	}
	if cm.Annotations == nil {
		cm.Annotations = map[string]string{}
	}
	if cm.Labels == nil {
		cm.Labels = map[string]string{}
	}
	cm.Labels["app.kubernetes.io/managed-by"] = "nsprov"
	cm.Annotations[AnnotationPolicyRevision] = rev
	cm.Annotations[AnnotationSavedBy] = os.Getenv("POD_NAME")
	cm.Annotations[AnnotationSavedAt] = time.Now().UTC().Format(time.RFC3339)
	cm.Data = nil
	cm.BinaryData = map[string][]byte{lastGoodKey: data}
	if cm.ResourceVersion == "" {
		err = c.client.Create(ctx, cm)
	} else {
		err = c.client.Update(ctx, cm)
	}
	if err != nil {
		return fmt.Errorf("saving the last good policy in %s: %w", c, err)
	}
	return nil
}

func encodeFiles(files policy.Files) ([]byte, error) {
	m := make(map[string]string, len(files))
	for p, data := range files {
		m[p] = string(data)
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if err := json.NewEncoder(zw).Encode(m); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func decodeFiles(data []byte) (policy.Files, error) {
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("the saved bundle is not gzipped: %w", err)
	}
	// The bundle limit (16 MiB) bounds what is decompressed.
	raw, err := io.ReadAll(io.LimitReader(zr, 17<<20))
	if err != nil {
		return nil, fmt.Errorf("the saved bundle does not decompress: %w", err)
	}
	var m map[string]string
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("the saved bundle is not a JSON map of files: %w", err)
	}
	files := make(policy.Files, len(m))
	for p, content := range m {
		files[p] = []byte(content)
	}
	return files, nil
}

// OpenStore loads the policy store as NewStore does, except that when
// --policy-dir does not load and a last good bundle was saved in the
// cluster, the store serves that one (reported as a rejection, reloading
// --policy-dir as usual). Without a saved bundle it fails, so a broken policy
// never makes nsprov serve the embedded one.
func (o *Options) OpenStore(ctx context.Context) (*policy.Store, error) {
	p := &o.Policy
	if p.Dir == "" || p.LastGood == "" {
		return p.NewStore(ctx)
	}
	log := logr.FromContextOrDiscard(ctx)
	lastGood := func(ctx context.Context) (*policy.LastGood, error) {
		cfg, err := o.Kube.RestConfig()
		if err != nil {
			return nil, fmt.Errorf("cannot read it without a kubeconfig: %w", err)
		}
		scheme := runtime.NewScheme()
		if err := corev1.AddToScheme(scheme); err != nil {
			return nil, err
		}
		cm, err := p.lastGoodConfigMap(cfg, scheme)
		if err != nil {
			return nil, err
		}
		if cm == nil {
			return nil, errors.New("no namespace to read it from: set --policy-last-good-namespace or $POD_NAMESPACE")
		}
		lg, err := cm.Load(ctx)
		if err != nil {
			return nil, err
		}
		return lg, nil
	}
	store, err := policy.NewStoreWithLastGood(ctx, p.Dir, p.OverlayDir, lastGood)
	if err != nil {
		return nil, err
	}
	if st := store.Status(); st.LastGood {
		log.Error(st.LastRejection, "the policy in --policy-dir does not load: serving the last good bundle until it is fixed",
			"policyDir", p.Dir, "source", st.Bundle.Source, "revision", st.Bundle.Revision)
	}
	return p.configure(store)
}

// lastGoodSaver saves the store's bundle in the last good ConfigMap each time
// a bundle of the directory becomes active. It runs on every replica: each
// saves what it loaded; the ConfigMap holds the latest.
type lastGoodSaver struct {
	store *policy.Store
	cm    *lastGoodConfigMap
	log   logr.Logger
	retry time.Duration
}

// NeedLeaderElection implements controller-runtime's LeaderElectionRunnable.
func (*lastGoodSaver) NeedLeaderElection() bool { return false }

// Start saves until ctx ends; a failed save is logged and retried.
func (s *lastGoodSaver) Start(ctx context.Context) error {
	saved := ""
	var retry <-chan time.Time
	for {
		changed := s.store.Changed()
		// The files are the active bundle's; saving the last good bundle
		// back (while the directory is broken) changes nothing.
		if files := s.store.Files(); files != nil {
			rev, err := files.Revision()
			if err == nil && rev != saved {
				if err = s.cm.Save(ctx, rev, files); err == nil {
					s.log.Info("saved the last good policy", "revision", rev, "configMap", s.cm.String())
					saved = rev
				}
			}
			retry = nil
			if err != nil {
				s.log.Error(err, "cannot save the last good policy; retrying", "revision", rev)
				retry = time.After(s.retry)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case <-retry:
		}
	}
}
