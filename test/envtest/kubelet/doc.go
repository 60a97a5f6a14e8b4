// Package kubelet is a process-level kubelet for envtest: it runs the
// containers of Pods as local processes, so that controllers that create Pods
// (Argo's workflow-controller) work against a real API server without a
// container runtime. It is test tooling only: nothing under cmd/ or internal/
// imports it.
//
// A Kubelet acts as the scheduler and the kubelet of one fake node. It binds
// the unscheduled Pods of its namespaces to the node, runs each init container
// to completion, one after the other, then the containers side by side, and
// writes the Pod's status as a kubelet would: phase, init and container
// statuses with exit codes, reasons and termination messages. A Pod that is
// deleted has its processes killed and its deletion completed (grace period 0).
//
// Each container runs in private mount and PID namespaces (util-linux
// `unshare`), as its user (util-linux `setpriv`), on the machine's root file
// system, with:
//   - the Pod's environment: value and downward-API fields (metadata.name,
//     metadata.namespace, metadata.uid, metadata.labels['k'],
//     metadata.annotations['k'], spec.nodeName, spec.serviceAccountName,
//     status.podIP, status.hostIP), with $(VAR) references expanded in env
//     values, command and args as Kubernetes expands them;
//   - KUBECONFIG pointing at a kubeconfig with a token of the Pod's service
//     account (from the TokenRequest API, bound to the Pod), whose namespace
//     is the Pod's: what the in-cluster configuration of a real Pod gives;
//   - emptyDir volumes (and their subPaths) shared between the Pod's
//     containers, mounted in the container's private /tmp or /run (also seen
//     as /var/run), so no mount point is needed on the machine; a private
//     /dev holding null, zero, full, random, urandom, tty and a
//     /dev/termination-log whose content becomes the container's termination
//     message;
//   - securityContext (Pod and container): runAsUser, runAsGroup,
//     runAsNonRoot (checked), readOnlyRootFilesystem (the root is remounted
//     read-only), allowPrivilegeEscalation false (no_new_privs) and
//     capabilities drop ALL.
//
// Commands are looked up on Options.Path followed by the machine's PATH;
// images are not pulled and play no part, so a container must have a command.
// Accepted but not enforced: image and imagePullPolicy, resources, the
// RuntimeDefault seccomp profile. Anything else a Pod may ask for (other
// volume types, envFrom, secret or config map references, probes, lifecycle
// hooks, ports with hostPort, subPathExpr, mounts outside /tmp and /run, restartPolicy other than Never,
// sidecar init containers, privileged or added capabilities, host
// namespaces, ...) fails the Pod with reason Unsupported and a message naming
// the field; it is never skipped.
//
// Nothing is left behind: the processes of a container die with the Kubelet
// (parent-death signal on unshare, whose --kill-child takes the container's
// PID namespace with it), mounts live only in the containers' mount
// namespaces, and the state directory is removed on Stop, or by the next
// start when a test binary was killed.
//
// It needs root (mount namespaces) and util-linux's unshare, setpriv and mount.
package kubelet
