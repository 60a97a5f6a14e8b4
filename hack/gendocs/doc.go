// Package gendocs generates the documentation pages that are derived from the
// code, and checks the pages that describe it:
//
//   - CLIReference renders docs/cli.md from nsprov's cobra command tree (the
//     test that compares it lives beside the commands, in cmd/webhook/app);
//   - ChartReadme renders charts/nsprov/README.md from Chart.yaml and the
//     comments of values.yaml;
//   - Picture reads the package picture in README.md, which the tests compare
//     with the imports `go list` reports.
//
// `make docs` regenerates the pages by running their tests with
// NSPROV_UPDATE_DOCS=1, as golden files are refreshed in this repository.
package gendocs

// UpdateEnv is the environment variable that, set to 1, makes the
// documentation tests rewrite the pages they compare instead of failing.
const UpdateEnv = "NSPROV_UPDATE_DOCS"

// RegenerateHint is what a stale-page failure tells the reader to run.
const RegenerateHint = "run `make docs` to regenerate it (it runs the documentation tests with " + UpdateEnv + "=1), then review and commit the diff"
