// Package certs gives nsprov's webhook server a serving certificate without
// cert-manager: a Manager keeps a CA and a serving certificate in a Secret
// (creating it, or adopting one that already holds a valid certificate),
// writes the CA bundle into nsprov's mutating and validating webhook
// configurations, renews the certificate at two thirds of its lifetime, and
// serves whatever the Secret holds through tls.Config.GetCertificate, so every
// replica picks up a renewal without a restart.
//
// Several replicas may run a Manager on the same Secret at once: every write
// carries the resourceVersion it read (optimistic concurrency), so one
// replica's renewal wins and the others adopt it on their next read. A
// replica writes the CA bundle into the webhook configurations before it
// serves a certificate signed by a new CA, and a renewed CA keeps the
// previous one in the bundle until it expires, so the API server trusts every
// certificate a replica may still serve.
//
// The package also exports nsprov_webhook_certificate_expiry_timestamp_seconds,
// read from the Manager or, when cert-manager provides the files, from the
// certificate file being served.
package certs
