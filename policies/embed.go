package policies

import (
	"embed"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Bundle holds the default policy bundle: the Rego modules and their tests at
// the top level and the data files under config/. The data of a file in
// config/ is loaded under data.config, as `opa eval -d policies/` would.
//
//go:embed *.rego config/*.yaml
var Bundle embed.FS

// Export writes the embedded bundle into dir (created if missing) as
// ordinary writable files, a starting point for an admin's own bundle.
// It refuses to overwrite existing files.
func Export(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.CopyFS(dir, Bundle); err != nil {
		return fmt.Errorf("exporting the policy bundle to %s: %w", dir, err)
	}
	// Files copied from an embed.FS are read-only; make them editable.
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		mode := os.FileMode(0o644)
		if d.IsDir() {
			mode = 0o755
		}
		return os.Chmod(p, mode)
	})
}
