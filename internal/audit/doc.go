// Package audit records nsprov's admission decisions so that an admin can
// answer "who tried to create what, when, and which rule stopped them" with
// kubectl, long after the fact, and without a flood of bad requests hurting
// admission or etcd.
//
// A Sink is the webhooks' admission.Recorder. For every decision of both
// webhooks it
//
//   - writes one JSON line to the decision log (time, request UID,
//     operation, namespace, user, groups, allowed, the violated rules with
//     their messages, warnings, dry-run, the policy revision and the
//     evaluation latency);
//   - updates the metrics: nsprov_admission_requests_total{webhook,
//     operation,result}, nsprov_admission_violations_total{rule},
//     nsprov_admission_duration_seconds{webhook}, nsprov_policy_info
//     {revision,source,evaluator} and the active bundle's decision cache
//     (nsprov_policy_decision_cache_bytes, _entries and
//     _lookups_total{result});
//   - for a denial that is not a dry run, queues one result per violated
//     rule for the ClusterReport nsprov-admission-denials, and one
//     NamespaceRequestDenied Event.
//
// Every string Record keeps is bounded first (admission.BoundRecord: at most
// 50 violations of 1 KiB, 64 groups, 20 warnings, other fields 256 bytes;
// the rest counted as omittedViolations), and a rule's joined messages are
// cut at 1 KiB, so a decision log line, a queued result and an Event note
// are bounded however large the request was.
//
// Record never blocks: both queues are bounded. The report queue drops its
// oldest entries when full; the Event queue refuses new Events when full.
// Drops are counted (nsprov_audit_records_dropped_total{reason},
// nsprov_audit_events_total{result="dropped"}).
//
// A Writer, on every replica, empties the queues. Events go through the
// events.k8s.io recorder of client-go at a bounded rate, as Warning Events
// regarding the Namespace (by name; they land in the default namespace, as
// for any cluster-scoped object). Repeated denials of one namespace name from
// one replica within minutes are folded into an event series with a count,
// as events.k8s.io does; the report keeps each of them. Denials are merged
// into the report in batches, one write per flush interval at most: read
// the report, merge, update with the read resourceVersion; on a conflict
// (another replica wrote first) read again and merge again. Results are keyed
// by request UID and rule, so a retried write never duplicates a result and
// a conflict never loses one. The report keeps the newest ReportSize results
// (default 1000, which keeps the object well under etcd's 1.5 MiB limit per
// object); older ones are trimmed and counted as dropped with reason
// report-bound, so persisted plus dropped always accounts for every result.
// When the API server refuses the report as too large, the writer keeps half
// as many results and writes again, and grows the bound back by a quarter
// with each write that succeeds; a result that is too large even alone can
// never be written: it is dropped and counted with reason too-large.
// When the OpenReports CRD is not installed the writer logs it once, keeps
// the denials queued (within the bound), looks again every RetryInterval,
// and the decision log, the metrics and the Events go on.
//
// An Auditor, on the leader only, re-evaluates every requested namespace (one
// with an nsprov.io/ request annotation) against the active policy at start,
// whenever the active policy revision changes, and every Interval, and
// replaces the results of the ClusterReport nsprov-namespace-audit with what
// it found: one result per violating namespace and rule, so a namespace
// disappears from it once fixed. Each namespace is evaluated as an UPDATE
// that changes nothing (object == oldObject), as nsprov's own identity (the
// controller's service account, listed in the policy's manager_users, and not
// an admin). That choice makes the user-dependent rules give no false
// positives and hides nothing:
//
//   - requester-not-in-team, team-immutable, environment-immutable and
//     request-annotations-removed judge a change of the request, and an
//     unchanged UPDATE changes nothing, whoever evaluates it;
//   - managed-metadata-forged accepts nsprov's own identities, which wrote
//     that metadata, and also only fires on a changed value;
//   - request-required is for CREATE only;
//   - the identity is neither admin nor exempt, so no admin exemption hides a
//     violation of the catalogue and naming rules (tier, environment,
//     network policy, features, name suffix, reserved names), which are the
//     ones a tightened policy changes.
//
// Evaluating as the namespace's requester instead would need the groups
// (team membership) the requester had, which nsprov does not know, and a
// rule that one day judges the requester would then misfire; evaluating as
// an admin would hide whatever admins are exempt from.
//
// The identity is contract.As(username): the provisioning controller
// evaluates plans as the same identity with the same groups.
//
// A Reader reads the two reports back, for `nsprov audit`: the denied
// requests grouped by request (newest first) and the namespaces of the last
// audit with the rules they break.
//
// The metrics are registered with controller-runtime's registry once, when
// the first Sink, Writer or Auditor is created.
package audit
