package argorunner

// Copies of small exported helpers of Argo's workflow/util package (v3.7.3).
// That package cannot be imported here: it pulls in Argo's server (SSO,
// SQL drivers) whose modules this repository does not require.

import (
	"encoding/json"
	"fmt"
	"hash/fnv"

	wfv1 "github.com/argoproj/argo-workflows/v3/pkg/apis/workflow/v1alpha1"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
)

// mergeTo is wfutil.MergeTo (workflow/util/merge.go).
func mergeTo(patch, target *wfv1.Workflow) error {
	if target == nil || patch == nil {
		return nil
	}
	patchHooks := patch.Spec.Hooks
	patch.Spec.Hooks = nil
	patchWfBytes, err := json.Marshal(patch)
	patch.Spec.Hooks = patchHooks
	if err != nil {
		return err
	}
	targetWfByte, err := json.Marshal(target)
	if err != nil {
		return err
	}
	mergedWfByte, err := strategicpatch.StrategicMergePatch(patchWfBytes, targetWfByte, wfv1.Workflow{})
	if err != nil {
		return err
	}
	target.Spec = wfv1.WorkflowSpec{}
	if err := json.Unmarshal(mergedWfByte, target); err != nil {
		return err
	}
	if len(patchHooks) != 0 && target.Spec.Hooks == nil {
		target.Spec.Hooks = make(wfv1.LifecycleHooks)
	}
	for name, hook := range patchHooks {
		if _, ok := target.Spec.Hooks[name]; !ok {
			target.Spec.Hooks[name] = hook
		}
	}
	return nil
}

// joinWorkflowSpec is wfutil.JoinWorkflowSpec: the Workflow's spec wins
// over the WorkflowTemplate's, which wins over the defaults.
func joinWorkflowSpec(wfSpec, wftSpec, wfDefaultSpec *wfv1.WorkflowSpec) (*wfv1.Workflow, error) {
	if wfSpec == nil {
		return nil, nil
	}
	targetWf := wfv1.Workflow{Spec: *wfSpec.DeepCopy()}
	if wftSpec != nil {
		if err := mergeTo(&wfv1.Workflow{Spec: *wftSpec.DeepCopy()}, &targetWf); err != nil {
			return nil, err
		}
	}
	if wfDefaultSpec != nil {
		if err := mergeTo(&wfv1.Workflow{Spec: *wfDefaultSpec.DeepCopy()}, &targetWf); err != nil {
			return nil, err
		}
	}
	if wfSpec.Suspend != targetWf.Spec.Suspend {
		targetWf.Spec.Suspend = wfSpec.Suspend
	}
	wfParamsMap := parametersToMapByName(wfSpec)
	wftParamsMap := parametersToMapByName(wftSpec)
	for index, parameter := range targetWf.Spec.Arguments.Parameters {
		if parameter.HasValue() {
			if param, ok := wfParamsMap[parameter.Name]; ok {
				targetWf.Spec.Arguments.Parameters[index] = *param.DeepCopy()
			} else if param, ok := wftParamsMap[parameter.Name]; ok {
				targetWf.Spec.Arguments.Parameters[index] = *param.DeepCopy()
			}
		}
	}
	return &targetWf, nil
}

func parametersToMapByName(spec *wfv1.WorkflowSpec) map[string]wfv1.Parameter {
	parameterMap := make(map[string]wfv1.Parameter)
	if spec != nil {
		for _, param := range spec.Arguments.Parameters {
			if param.HasValue() {
				parameterMap[param.Name] = param
			}
		}
	}
	return parameterMap
}

const maxPodNamePrefixLength = 253 - 10

// generatePodName is wfutil.GeneratePodName with the default (v2) pod names.
func generatePodName(workflowName, nodeName, templateName string) string {
	if workflowName == nodeName {
		return workflowName
	}
	prefix := workflowName
	if templateName != "" {
		prefix = fmt.Sprintf("%s-%s", prefix, templateName)
	}
	if len(prefix) > maxPodNamePrefixLength-1 {
		prefix = prefix[0 : maxPodNamePrefixLength-1]
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(nodeName))
	return fmt.Sprintf("%s-%v", prefix, h.Sum32())
}
