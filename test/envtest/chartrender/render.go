package chartrender

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	"helm.sh/helm/v3/pkg/lint"
	"helm.sh/helm/v3/pkg/lint/support"
	"helm.sh/helm/v3/pkg/releaseutil"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// HookAnnotation marks a Helm hook.
const HookAnnotation = "helm.sh/hook"

// ReleaseName is the release name the chart is rendered as.
const ReleaseName = "nsprov"

// KubeVersion is the Kubernetes version rendering and linting assume: the
// one the envtest control plane runs.
var KubeVersion = chartutil.KubeVersion{Version: "v1.37.2", Major: "1", Minor: "37"}

// ChartDir is the directory of nsprov's chart in this source tree.
func ChartDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "..", "charts", "nsprov")
}

// Result is a rendered chart.
type Result struct {
	// Objects are the rendered manifests, in the order of their templates'
	// paths and their position in each template: the release's objects,
	// without its hooks.
	Objects []*unstructured.Unstructured
	// Hooks are the objects annotated helm.sh/hook, which Helm creates at
	// the hook's events (post-install, pre-delete, test, ...) instead of
	// with the release, in the same order.
	Hooks []*unstructured.Unstructured
	// Notes is the rendered NOTES.txt.
	Notes string
}

// Render renders the chart with values (nil: the defaults) into namespace
// and returns its objects, without its hooks (RenderAll has them). Values
// that the schema rejects are an error.
func Render(values map[string]any, namespace string) ([]*unstructured.Unstructured, error) {
	r, err := RenderAll(values, namespace)
	if err != nil {
		return nil, err
	}
	return r.Objects, nil
}

// RenderAll renders the chart like Render and also returns its notes.
func RenderAll(values map[string]any, namespace string) (*Result, error) {
	return RenderRelease(values, ReleaseName, namespace)
}

// RenderRelease renders the chart like RenderAll as the release name.
func RenderRelease(values map[string]any, name, namespace string) (*Result, error) {
	ch, err := loader.Load(ChartDir())
	if err != nil {
		return nil, fmt.Errorf("loading the chart: %w", err)
	}
	caps := chartutil.DefaultCapabilities.Copy()
	caps.KubeVersion = KubeVersion
	opts := chartutil.ReleaseOptions{Name: name, Namespace: namespace, Revision: 1, IsInstall: true}
	vals, err := chartutil.ToRenderValues(ch, values, opts, caps)
	if err != nil {
		return nil, fmt.Errorf("chart values: %w", err)
	}
	files, err := engine.Render(ch, vals)
	if err != nil {
		return nil, fmt.Errorf("rendering the chart: %w", err)
	}
	return collect(ch, files)
}

func collect(ch *chart.Chart, files map[string]string) (*Result, error) {
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	res := &Result{}
	prefix := ch.Name() + "/templates/"
	for _, name := range names {
		base := path.Base(name)
		switch {
		case name == prefix+"NOTES.txt":
			res.Notes = files[name]
			continue
		case strings.HasPrefix(base, "_") || !strings.HasSuffix(base, ".yaml"):
			continue
		}
		objs, err := decode(files[name])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		for _, o := range objs {
			if _, hook := o.GetAnnotations()[HookAnnotation]; hook {
				res.Hooks = append(res.Hooks, o)
			} else {
				res.Objects = append(res.Objects, o)
			}
		}
	}
	return res, nil
}

// decode splits a rendered template into its objects, in order.
func decode(manifest string) ([]*unstructured.Unstructured, error) {
	docs := releaseutil.SplitManifests(manifest)
	keys := make([]string, 0, len(docs))
	for k := range docs {
		keys = append(keys, k)
	}
	// SplitManifests names documents manifest-0, manifest-1, ...
	sort.Slice(keys, func(i, j int) bool {
		return len(keys[i]) < len(keys[j]) || (len(keys[i]) == len(keys[j]) && keys[i] < keys[j])
	})
	var out []*unstructured.Unstructured
	for _, k := range keys {
		d := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(docs[k]), 4096)
		for {
			var m map[string]any
			if err := d.Decode(&m); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				return nil, fmt.Errorf("rendered YAML does not parse: %w", err)
			}
			if len(m) == 0 {
				continue
			}
			u := &unstructured.Unstructured{Object: m}
			if u.GetKind() == "" || u.GetAPIVersion() == "" || u.GetName() == "" {
				return nil, fmt.Errorf("rendered object without apiVersion, kind or name: %v", m)
			}
			out = append(out, u)
		}
	}
	return out, nil
}

// ValuesFile reads a values file, such as one of the chart's ci/*-values.yaml.
func ValuesFile(file string) (map[string]any, error) {
	v, err := chartutil.ReadValuesFile(file)
	if err != nil {
		return nil, fmt.Errorf("reading values: %w", err)
	}
	return v.AsMap(), nil
}

// CIValuesFiles lists the chart's ci/*-values.yaml files.
func CIValuesFiles() ([]string, error) {
	files, err := filepath.Glob(filepath.Join(ChartDir(), "ci", "*-values.yaml"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no ci/*-values.yaml in %s", ChartDir())
	}
	return files, nil
}

// Lint runs Helm's linter (what `helm lint --strict` checks) on the chart
// with values in namespace, and returns every message of warning severity or
// worse as an error.
func Lint(values map[string]any, namespace string) error {
	if _, err := os.Stat(ChartDir()); err != nil {
		return fmt.Errorf("the chart: %w", err)
	}
	kv := KubeVersion
	linter := lint.AllWithKubeVersion(ChartDir(), values, namespace, &kv)
	var errs []error
	for _, m := range linter.Messages {
		if m.Severity >= support.WarningSev {
			errs = append(errs, m)
		}
	}
	return errors.Join(errs...)
}

// Localize makes the chart's Deployment (changed in place) runnable as a
// process on this machine, as a kubelet would mount its volumes: each
// ConfigMap volume whose ConfigMap is among objs is written under
// dir/<volume name>, with the volume's items at their paths, and every
// argument of the first container that names a mount path of such a volume
// (--flag=path or --flag=path/...) names that directory instead. Volumes of
// other sources (Secrets, emptyDirs, ConfigMaps the chart does not render)
// are left alone.
func Localize(deployment *unstructured.Unstructured, objs []*unstructured.Unstructured, dir string) error {
	volumes, _, err := unstructured.NestedSlice(deployment.Object, "spec", "template", "spec", "volumes")
	if err != nil {
		return fmt.Errorf("the Deployment's volumes: %w", err)
	}
	local := map[string]string{} // volume name: directory
	for _, v := range volumes {
		vol, _ := v.(map[string]any)
		name, _, _ := unstructured.NestedString(vol, "name")
		cmName, ok, _ := unstructured.NestedString(vol, "configMap", "name")
		if !ok {
			continue
		}
		var data map[string]string
		for _, o := range objs {
			if o.GetKind() == "ConfigMap" && o.GetName() == cmName && o.GetNamespace() == deployment.GetNamespace() {
				data, _, _ = unstructured.NestedStringMap(o.Object, "data")
			}
		}
		if data == nil {
			continue
		}
		target := filepath.Join(dir, name)
		items, _, _ := unstructured.NestedSlice(vol, "configMap", "items")
		files := map[string]string{}
		if len(items) == 0 {
			for k, content := range data {
				files[k] = content
			}
		}
		for _, it := range items {
			item, _ := it.(map[string]any)
			key, _, _ := unstructured.NestedString(item, "key")
			p, _, _ := unstructured.NestedString(item, "path")
			content, ok := data[key]
			if !ok {
				return fmt.Errorf("volume %s: ConfigMap %s has no key %s", name, cmName, key)
			}
			files[p] = content
		}
		for p, content := range files {
			full := filepath.Join(target, filepath.FromSlash(p))
			if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
				return err
			}
		}
		local[name] = target
	}
	containers, _, err := unstructured.NestedSlice(deployment.Object, "spec", "template", "spec", "containers")
	if err != nil || len(containers) == 0 {
		return fmt.Errorf("the Deployment has no containers: %v", err)
	}
	c, _ := containers[0].(map[string]any)
	mounts, _, _ := unstructured.NestedSlice(c, "volumeMounts")
	args, _, _ := unstructured.NestedStringSlice(c, "args")
	for _, m := range mounts {
		mount, _ := m.(map[string]any)
		name, _, _ := unstructured.NestedString(mount, "name")
		mountPath, _, _ := unstructured.NestedString(mount, "mountPath")
		target, ok := local[name]
		if !ok {
			continue
		}
		for i, a := range args {
			flag, value, found := strings.Cut(a, "=")
			if !found || !(value == mountPath || strings.HasPrefix(value, mountPath+"/")) {
				continue
			}
			args[i] = flag + "=" + target + strings.TrimPrefix(value, mountPath)
		}
	}
	if err := unstructured.SetNestedStringSlice(c, args, "args"); err != nil {
		return err
	}
	containers[0] = c
	return unstructured.SetNestedSlice(deployment.Object, containers, "spec", "template", "spec", "containers")
}
