// Package testutil holds the builders nsprov's tests share: Namespaces as
// objects and as the API server sends them, admission requests and reviews,
// JSON patches applied as the API server applies them, and copies of policy
// bundles a test can edit.
//
// It is imported only by _test.go files and never by product code. It does
// not import internal/policy, so that package's own tests can use it.
package testutil
