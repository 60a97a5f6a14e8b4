package argorunner

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
)

// UnsupportedError names a field of a Workflow that the runner does not
// implement.
type UnsupportedError struct {
	// Field is the path of the field, for example
	// spec.templates[apply].container.
	Field string
}

func (e *UnsupportedError) Error() string {
	return fmt.Sprintf("%s is not supported by the local Argo runner (test/envtest/argorunner)", e.Field)
}

// podOnly are fields that only shape a step's pod; no pod is created here.
var podOnly = []string{
	"serviceAccountName", "automountServiceAccountToken", "executor", "securityContext", "podSpecPatch",
	"nodeSelector", "affinity", "tolerations", "schedulerName", "hostAliases", "volumes",
}

var (
	specFields = set(append([]string{
		"templates", "entrypoint", "arguments", "templateDefaults", "workflowTemplateRef", "retryStrategy",
		"parallelism", "priority", "ttlStrategy", "podGC", "podMetadata", "podPriorityClassName",
		"imagePullSecrets", "hostNetwork", "dnsPolicy", "dnsConfig", "podDisruptionBudget", "archiveLogs",
	}, podOnly...)...)
	templateFields = set(append([]string{
		"name", "inputs", "resource", "dag", "retryStrategy", "metadata", "priorityClassName",
	}, podOnly...)...)
	inputFields     = set("parameters")
	inParamFields   = set("name", "value", "default", "enum", "description")
	argParamFields  = set("name", "value", "default", "enum", "description")
	resourceFields  = set("action", "manifest", "mergeStrategy", "setOwnerReference", "flags")
	dagFields       = set("tasks", "failFast")
	taskFields      = set("name", "template", "arguments", "dependencies", "depends", "withItems", "withParam", "when", "continueOn")
	retryFields     = set("limit", "retryPolicy", "backoff", "affinity")
	argumentsFields = set("parameters")
	tmplRefFields   = set("name")
)

func set(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

// checkSupported returns an *UnsupportedError for the first field (in a
// stable order) of the joined spec that the runner does not implement.
// Templates are checked after templateDefaults are merged into them, and all
// templates are checked, used or not, so nothing is skipped silently.
func checkSupported(spec *wfv1.WorkflowSpec, templates []wfv1.Template) error {
	specCopy := spec.DeepCopy()
	specCopy.Templates = nil
	m, err := toMap(specCopy)
	if err != nil {
		return err
	}
	if err := allowed("spec", m, specFields); err != nil {
		return err
	}
	if ref, ok := m["workflowTemplateRef"].(map[string]any); ok {
		if err := allowed("spec.workflowTemplateRef", ref, tmplRefFields); err != nil {
			return err
		}
	}
	if args, ok := m["arguments"].(map[string]any); ok {
		if err := allowed("spec.arguments", args, argumentsFields); err != nil {
			return err
		}
		if err := params("spec.arguments.parameters", args["parameters"], argParamFields); err != nil {
			return err
		}
	}
	if rs, ok := m["retryStrategy"].(map[string]any); ok {
		if err := checkRetry("spec.retryStrategy", rs); err != nil {
			return err
		}
	}
	for _, t := range templates {
		if err := checkTemplate(&t); err != nil {
			return err
		}
	}
	return nil
}

func checkTemplate(t *wfv1.Template) error {
	path := fmt.Sprintf("spec.templates[%s]", t.Name)
	m, err := toMap(t)
	if err != nil {
		return err
	}
	if err := allowed(path, m, templateFields); err != nil {
		return err
	}
	if in, ok := m["inputs"].(map[string]any); ok {
		if err := allowed(path+".inputs", in, inputFields); err != nil {
			return err
		}
		if err := params(path+".inputs.parameters", in["parameters"], inParamFields); err != nil {
			return err
		}
	}
	if rs, ok := m["retryStrategy"].(map[string]any); ok {
		if err := checkRetry(path+".retryStrategy", rs); err != nil {
			return err
		}
	}
	res, isRes := m["resource"].(map[string]any)
	dag, isDAG := m["dag"].(map[string]any)
	switch {
	case isRes:
		if err := allowed(path+".resource", res, resourceFields); err != nil {
			return err
		}
		if strategy, _ := res["mergeStrategy"].(string); strategy == "json" {
			// argoexec then expects `kubectl patch <kind> <name>` in flags; not reproduced here.
			return &UnsupportedError{Field: path + ".resource.mergeStrategy: json"}
		}
	case isDAG:
		if err := allowed(path+".dag", dag, dagFields); err != nil {
			return err
		}
		tasks, _ := dag["tasks"].([]any)
		for i, raw := range tasks {
			task, _ := raw.(map[string]any)
			tpath := fmt.Sprintf("%s.dag.tasks[%d]", path, i)
			if name, ok := task["name"].(string); ok {
				tpath = fmt.Sprintf("%s.dag.tasks[%s]", path, name)
			}
			if err := allowed(tpath, task, taskFields); err != nil {
				return err
			}
			if args, ok := task["arguments"].(map[string]any); ok {
				if err := allowed(tpath+".arguments", args, argumentsFields); err != nil {
					return err
				}
				if err := params(tpath+".arguments.parameters", args["parameters"], argParamFields); err != nil {
					return err
				}
			}
		}
	default:
		return &UnsupportedError{Field: path + "." + typeField(t.GetType())}
	}
	return nil
}

func checkRetry(path string, rs map[string]any) error {
	if err := allowed(path, rs, retryFields); err != nil {
		return err
	}
	switch p, _ := rs["retryPolicy"].(string); p {
	case "", string(wfv1.RetryPolicyAlways), string(wfv1.RetryPolicyOnFailure), string(wfv1.RetryPolicyOnError):
	default:
		return &UnsupportedError{Field: path + ".retryPolicy: " + p}
	}
	return nil
}

func params(path string, raw any, fields map[string]bool) error {
	list, _ := raw.([]any)
	for i, p := range list {
		pm, _ := p.(map[string]any)
		ppath := fmt.Sprintf("%s[%d]", path, i)
		if name, ok := pm["name"].(string); ok {
			ppath = fmt.Sprintf("%s[%s]", path, name)
		}
		if err := allowed(ppath, pm, fields); err != nil {
			return err
		}
	}
	return nil
}

// allowed reports the first key of m (sorted) that is set to a non-empty
// value and is not in fields.
func allowed(path string, m map[string]any, fields map[string]bool) error {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if fields[k] || empty(m[k]) {
			continue
		}
		return &UnsupportedError{Field: path + "." + k}
	}
	return nil
}

func empty(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case string:
		return x == ""
	case bool:
		return !x
	case float64:
		return x == 0
	case []any:
		return len(x) == 0
	case map[string]any:
		for _, e := range x {
			if !empty(e) {
				return false
			}
		}
		return true
	}
	return false
}

func toMap(v any) (map[string]any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	return m, nil
}

// unresolved returns the first {{...}} tag left in s.
func unresolved(s string) string {
	i := strings.Index(s, "{{")
	if i < 0 {
		return ""
	}
	j := strings.Index(s[i:], "}}")
	if j < 0 {
		return s[i:]
	}
	return s[i : i+j+2]
}

// typeField is the field that makes a template of the given type.
func typeField(t wfv1.TemplateType) string {
	switch t {
	case wfv1.TemplateTypeDAG:
		return "dag"
	case wfv1.TemplateTypeHTTP:
		return "http"
	case wfv1.TemplateTypeUnknown:
		return "(no resource or dag)"
	}
	s := string(t)
	return strings.ToLower(s[:1]) + s[1:]
}
