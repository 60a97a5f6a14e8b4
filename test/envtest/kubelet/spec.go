package kubelet

import (
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// containerEnv is a container's environment, as KEY=value, with downward-API
// values and $(VAR) references to earlier variables expanded.
func containerEnv(pod *corev1.Pod, c corev1.Container) ([]string, error) {
	values := map[string]string{}
	var out []string
	for _, e := range c.Env {
		v := e.Value
		if e.ValueFrom != nil {
			if e.ValueFrom.FieldRef == nil {
				return nil, fmt.Errorf("env %s: only valueFrom.fieldRef is implemented", e.Name)
			}
			var err error
			if v, err = fieldValue(pod, e.ValueFrom.FieldRef.FieldPath); err != nil {
				return nil, fmt.Errorf("env %s: %w", e.Name, err)
			}
		} else {
			v = expand(v, func(name string) (string, bool) { val, ok := values[name]; return val, ok })
		}
		values[e.Name] = v
		out = append(out, e.Name+"="+v)
	}
	return out, nil
}

// fieldValue is the downward-API value of a Pod field.
func fieldValue(pod *corev1.Pod, path string) (string, error) {
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.podIP", "status.hostIP":
		return "127.0.0.1", nil
	case "status.podIPs", "status.hostIPs":
		return "127.0.0.1", nil
	}
	for prefix, m := range map[string]map[string]string{"metadata.labels": pod.Labels, "metadata.annotations": pod.Annotations} {
		if rest, ok := strings.CutPrefix(path, prefix+"['"); ok && strings.HasSuffix(rest, "']") {
			return m[strings.TrimSuffix(rest, "']")], nil
		}
	}
	return "", fmt.Errorf("field %q is not implemented", path)
}

// expandCommand expands $(VAR) references to the environment in a command.
func expandCommand(argv, env []string) []string {
	values := map[string]string{}
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		values[k] = v
	}
	out := make([]string, len(argv))
	for i, a := range argv {
		out[i] = expand(a, func(name string) (string, bool) { v, ok := values[name]; return v, ok })
	}
	return out
}

// expand replaces $(VAR) by VAR's value and $$ by $, as Kubernetes expands
// env values, commands and args; an undefined or unterminated reference is
// kept as written.
func expand(s string, lookup func(string) (string, bool)) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString("$(")
				i++
				continue
			}
			name := s[i+2 : i+2+end]
			if v, ok := lookup(name); ok {
				b.WriteString(v)
			} else {
				b.WriteString("$(" + name + ")")
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

// security is a container's effective security context: the container's
// fields over the Pod's.
type security struct {
	runAsUser, runAsGroup    *int64
	runAsNonRoot             *bool
	readOnlyRootFilesystem   *bool
	allowPrivilegeEscalation *bool
	supplementalGroups       []int64
	dropAll                  bool
}

func effectiveSecurity(pod *corev1.Pod, c corev1.Container) security {
	var s security
	if p := pod.Spec.SecurityContext; p != nil {
		s.runAsUser, s.runAsGroup, s.runAsNonRoot = p.RunAsUser, p.RunAsGroup, p.RunAsNonRoot
		s.supplementalGroups = p.SupplementalGroups
	}
	if cs := c.SecurityContext; cs != nil {
		if cs.RunAsUser != nil {
			s.runAsUser = cs.RunAsUser
		}
		if cs.RunAsGroup != nil {
			s.runAsGroup = cs.RunAsGroup
		}
		if cs.RunAsNonRoot != nil {
			s.runAsNonRoot = cs.RunAsNonRoot
		}
		s.readOnlyRootFilesystem = cs.ReadOnlyRootFilesystem
		s.allowPrivilegeEscalation = cs.AllowPrivilegeEscalation
		if cs.Capabilities != nil {
			for _, d := range cs.Capabilities.Drop {
				if strings.EqualFold(string(d), "ALL") {
					s.dropAll = true
				}
			}
		}
	}
	return s
}

// validatePod rejects what the Kubelet does not implement, naming the field.
func validatePod(pod *corev1.Pod) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	s := pod.Spec
	if s.RestartPolicy != "" && s.RestartPolicy != corev1.RestartPolicyNever {
		bad("spec.restartPolicy %s: only Never is implemented", s.RestartPolicy)
	}
	if s.HostPID || s.HostIPC || s.ShareProcessNamespace != nil && *s.ShareProcessNamespace {
		bad("spec.hostPID, hostIPC and shareProcessNamespace are not implemented")
	}
	if len(s.EphemeralContainers) > 0 {
		bad("spec.ephemeralContainers are not implemented")
	}
	if len(s.ReadinessGates) > 0 {
		bad("spec.readinessGates are not implemented")
	}
	if len(s.HostAliases) > 0 {
		bad("spec.hostAliases are not implemented")
	}
	if p := s.SecurityContext; p != nil {
		if p.FSGroup != nil || p.FSGroupChangePolicy != nil {
			bad("spec.securityContext.fsGroup is not implemented")
		}
		if len(p.Sysctls) > 0 || p.SELinuxOptions != nil || p.AppArmorProfile != nil || p.WindowsOptions != nil {
			bad("spec.securityContext: sysctls, seLinuxOptions, appArmorProfile and windowsOptions are not implemented")
		}
		checkSeccomp("spec.securityContext", p.SeccompProfile, bad)
	}
	volumes := map[string]bool{}
	for _, v := range s.Volumes {
		if v.EmptyDir == nil {
			bad("spec.volumes[%s]: only emptyDir volumes are implemented", v.Name)
		}
		volumes[v.Name] = true
	}
	for _, c := range s.InitContainers {
		if c.RestartPolicy != nil {
			bad("spec.initContainers[%s].restartPolicy (sidecar containers) is not implemented", c.Name)
		}
		validateContainer("spec.initContainers["+c.Name+"]", c, volumes, bad)
	}
	for _, c := range s.Containers {
		validateContainer("spec.containers["+c.Name+"]", c, volumes, bad)
	}
	return errors.Join(errs...)
}

func validateContainer(field string, c corev1.Container, volumes map[string]bool, bad func(string, ...any)) {
	if len(c.Command) == 0 {
		bad("%s.command is required: images play no part, so there is no entrypoint", field)
	}
	if len(c.EnvFrom) > 0 {
		bad("%s.envFrom is not implemented", field)
	}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.FieldRef == nil {
			bad("%s.env[%s].valueFrom: only fieldRef is implemented", field, e.Name)
		}
	}
	for _, p := range c.Ports {
		if p.HostPort != 0 {
			bad("%s.ports: hostPort is not implemented", field)
		}
	}
	if c.LivenessProbe != nil || c.ReadinessProbe != nil || c.StartupProbe != nil {
		bad("%s: probes are not implemented", field)
	}
	if c.Lifecycle != nil {
		bad("%s.lifecycle is not implemented", field)
	}
	if c.Stdin || c.TTY {
		bad("%s: stdin and tty are not implemented", field)
	}
	if len(c.VolumeDevices) > 0 {
		bad("%s.volumeDevices are not implemented", field)
	}
	if c.TerminationMessagePath != "" && c.TerminationMessagePath != corev1.TerminationMessagePathDefault {
		bad("%s.terminationMessagePath: only %s is implemented", field, corev1.TerminationMessagePathDefault)
	}
	for _, m := range c.VolumeMounts {
		switch {
		case !volumes[m.Name]:
			bad("%s.volumeMounts[%s]: no such volume", field, m.Name)
		case m.SubPathExpr != "":
			bad("%s.volumeMounts[%s].subPathExpr is not implemented", field, m.Name)
		case m.MountPropagation != nil && *m.MountPropagation != corev1.MountPropagationNone:
			bad("%s.volumeMounts[%s].mountPropagation is not implemented", field, m.Name)
		}
		if _, _, ok := privatePath(m.MountPath); !ok {
			bad("%s.volumeMounts[%s]: only mount paths in /run, /var/run or /tmp are implemented (elsewhere a mount point would be needed on the machine)", field, m.Name)
		}
	}
	if sc := c.SecurityContext; sc != nil {
		if sc.Privileged != nil && *sc.Privileged {
			bad("%s.securityContext.privileged is not implemented", field)
		}
		if sc.Capabilities != nil && len(sc.Capabilities.Add) > 0 {
			bad("%s.securityContext.capabilities.add is not implemented", field)
		}
		if sc.Capabilities != nil {
			for _, d := range sc.Capabilities.Drop {
				if !strings.EqualFold(string(d), "ALL") {
					bad("%s.securityContext.capabilities.drop: only ALL is implemented", field)
				}
			}
		}
		if sc.ProcMount != nil && *sc.ProcMount != corev1.DefaultProcMount {
			bad("%s.securityContext.procMount is not implemented", field)
		}
		if sc.SELinuxOptions != nil || sc.AppArmorProfile != nil || sc.WindowsOptions != nil {
			bad("%s.securityContext: seLinuxOptions, appArmorProfile and windowsOptions are not implemented", field)
		}
		checkSeccomp(field+".securityContext", sc.SeccompProfile, bad)
	}
}

// checkSeccomp accepts the RuntimeDefault profile (not enforced: it only
// forbids system calls that programs run here do not make) and refuses others.
func checkSeccomp(field string, p *corev1.SeccompProfile, bad func(string, ...any)) {
	if p != nil && p.Type != corev1.SeccompProfileTypeRuntimeDefault {
		bad("%s.seccompProfile %s: only RuntimeDefault is accepted", field, p.Type)
	}
}
