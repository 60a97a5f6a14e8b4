package policies

import "embed"

// Bundle holds the default policy bundle: the Rego modules and their tests at
// the top level and the data files under config/. The data of a file in
// config/ is loaded under data.config, as `opa eval -d policies/` would.
//
//go:embed *.rego config/*.yaml
var Bundle embed.FS
