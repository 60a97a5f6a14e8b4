package policy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path"
	"sort"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/loader"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"

	"github.com/nsprov/nsprov/internal/policy/compiled"
	"github.com/nsprov/nsprov/policies"
)

// The entry points every bundle must define.
const (
	MutationQuery   = "data.nsprov.mutation.result"
	DenyQuery       = "data.nsprov.validation.deny"
	WarnQuery       = "data.nsprov.validation.warn"
	PlanQuery       = "data.nsprov.plan.plan"
	testFileSuffix  = "_test.rego"
	maxBundleFiles  = 1000
	maxBundleSizeMB = 16
)

// Bundle is a compiled policy bundle with its queries prepared.
type Bundle struct {
	// Revision is a short hash of every file of the bundle; it changes when
	// any Rego module or data file changes.
	Revision string
	// Source says where the bundle came from: "embedded" or a directory.
	Source string
	// Overlay is the directory whose files were layered over Source's (see
	// LoadLayered), or empty.
	Overlay string
	// Evaluator says how the queries are evaluated: "compiled", or "topdown"
	// with the reason the bundle could not be compiled (see compiled.go).
	Evaluator string

	modules  map[string]*ast.Module // without the tests
	tests    map[string]*ast.Module
	data     map[string]any
	compiler *ast.Compiler
	store    storage.Store

	mutation   *query
	validation *query
	plan       *query

	mutations   *decisionCache[*Mutation]
	validations *decisionCache[*Validation]
	plans       *decisionCache[map[string]any]
	// cacheEntries and cacheBytes bound the decision caches.
	cacheEntries, cacheBytes int

	// strings holds a shared term for each string the policy knows (see
	// knownStrings), which the input reuses.
	strings map[string]*ast.Term
}

// SetDecisionCacheSize sets how many decisions of each kind the bundle
// remembers (0 disables the cache) and empties it. Call it before the bundle
// serves requests.
func (b *Bundle) SetDecisionCacheSize(n int) {
	b.cacheEntries = n
	b.newCaches()
}

// SetDecisionCacheBytes sets the memory budget of the bundle's decision
// caches, shared equally by mutations, validations and plans (0 disables
// the cache), and empties them. Call it before the bundle serves requests.
func (b *Bundle) SetDecisionCacheBytes(n int) {
	b.cacheBytes = n
	b.newCaches()
}

func (b *Bundle) newCaches() {
	third := b.cacheBytes / 3
	b.mutations = newDecisionCache(b.cacheEntries, third, mutationSize)
	b.validations = newDecisionCache(b.cacheEntries, third, validationSize)
	b.plans = newDecisionCache(min(b.cacheEntries, MaxCachedPlans), third, planSize)
}

// CacheStats returns the bundle's decision cache figures, summed over
// mutations, validations and plans.
func (b *Bundle) CacheStats() CacheStats {
	return b.mutations.stats().add(b.validations.stats()).add(b.plans.stats())
}

// LoadEmbedded compiles the bundle built into the binary.
func LoadEmbedded(ctx context.Context) (*Bundle, error) {
	return Load(ctx, policies.Bundle, "embedded")
}

// LoadDir compiles the bundle in a directory laid out like policies/.
func LoadDir(ctx context.Context, dir string) (*Bundle, error) {
	info, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("policy directory: %w", err)
	}
	if !info.IsDir() {
		return nil, fmt.Errorf("policy directory %s is not a directory", dir)
	}
	return Load(ctx, os.DirFS(dir), dir)
}

// Load compiles the bundle in fsys. Every .rego file is a module (files ending
// in _test.rego are tests, run by Test but not served); every .json or .yaml
// file is data, placed under data.<directory path> as opa does. It fails with
// every compile error when the bundle does not compile or lacks an entry point.
func Load(ctx context.Context, fsys fs.FS, source string) (*Bundle, error) {
	revision, err := revisionOf(fsys)
	if err != nil {
		return nil, fmt.Errorf("policy bundle %s: %w", source, err)
	}
	loaded, err := loader.NewFileLoader().
		WithFS(fsys).
		WithRegoVersion(ast.RegoV1).
		WithProcessAnnotation(true).
		Filtered([]string{"."}, func(abspath string, info fs.FileInfo, depth int) bool {
			return hiddenOrUnknown(info)
		})
	if err != nil {
		return nil, fmt.Errorf("policy bundle %s: %w", source, err)
	}
	b := &Bundle{
		Revision: revision,
		Source:   source,
		modules:  map[string]*ast.Module{},
		tests:    map[string]*ast.Module{},
		data:     loaded.Documents,
	}
	for name, f := range loaded.Modules {
		if strings.HasSuffix(name, testFileSuffix) {
			b.tests[name] = f.Parsed
		} else {
			b.modules[name] = f.Parsed
		}
	}
	if len(b.modules) == 0 {
		return nil, fmt.Errorf("policy bundle %s has no .rego modules; start from a copy of the policies/ directory", source)
	}
	b.compiler = ast.NewCompiler().WithEnablePrintStatements(false)
	if b.compiler.Compile(b.modules); b.compiler.Failed() {
		return nil, fmt.Errorf("policy bundle %s does not compile: %w", source, b.compiler.Errors)
	}
	for _, q := range []string{MutationQuery, DenyQuery, WarnQuery, PlanQuery} {
		if len(b.compiler.GetRulesForVirtualDocument(ast.MustParseRef(q))) == 0 {
			return nil, fmt.Errorf("policy bundle %s does not define %s, which nsprov queries", source, q)
		}
	}
	b.cacheEntries, b.cacheBytes = DefaultDecisionCacheSize, DefaultDecisionCacheBytes
	b.newCaches()
	b.store = inmem.NewFromObjectWithOpts(b.data, inmem.OptRoundTripOnWrite(false), inmem.OptReturnASTValuesOnRead(true))

	if err := b.prepare(ctx); err != nil {
		return nil, fmt.Errorf("policy bundle %s: %w", source, err)
	}
	return b, nil
}

// prepare prepares the bundle's queries for both evaluators and chooses the
// compiled one; when any query cannot be compiled, none is, topdown
// evaluates them all, and Evaluator says why.
func (b *Bundle) prepare(ctx context.Context) error {
	data := &dataCache{}
	queries := []*query{
		{text: "result = " + MutationQuery},
		{text: "deny = " + DenyQuery + "; warn = " + WarnQuery},
		{text: "plan = " + PlanQuery},
	}
	for _, q := range queries {
		td, err := newTopdownQuery(b.compiler, b.store, data, q.text)
		if err != nil {
			return fmt.Errorf("preparing %s: %w", q.text, err)
		}
		q.topdown, q.eval = td, td
	}
	b.mutation, b.validation, b.plan = queries[0], queries[1], queries[2]
	b.strings = knownStrings(b.data, b.modules)
	b.Evaluator = EvaluatorCompiled
	if err := b.compile(ctx, queries); err != nil {
		b.Evaluator = EvaluatorTopdown + " (" + err.Error() + ")"
	}
	return nil
}

// compile plans the bundle's queries with OPA's planner and prepares them to
// run as compiled programs. When any query cannot be compiled, none is.
func (b *Bundle) compile(ctx context.Context, queries []*query) error {
	data, err := ast.InterfaceToValue(b.data)
	if err != nil {
		return fmt.Errorf("data: %w", err)
	}
	progs := make([]Evaluator, len(queries))
	for i, q := range queries {
		p, err := newEvaluator(ctx, EvaluatorCompiled, b.compiler, b.store, data, q.text)
		if err != nil {
			return fmt.Errorf("planning %s: %w", q.text, err)
		}
		progs[i] = p
	}
	for i, q := range queries {
		q.eval = progs[i]
	}
	return nil
}

// UseEvaluator selects the evaluator by name: EvaluatorCompiled (the
// default, which falls back to topdown when the bundle cannot be compiled) or
// EvaluatorTopdown, OPA's evaluator. Call it before the bundle serves
// requests.
func (b *Bundle) UseEvaluator(name string) error {
	switch name {
	case EvaluatorCompiled:
		return nil
	case EvaluatorTopdown:
		for _, q := range []*query{b.mutation, b.validation, b.plan} {
			q.eval = q.topdown
		}
		b.Evaluator = EvaluatorTopdown
		return nil
	}
	return fmt.Errorf("policy evaluator %q is not known; use %s or %s", name, EvaluatorCompiled, EvaluatorTopdown)
}

// Compiled reports whether the bundle's queries run as compiled programs.
func (b *Bundle) Compiled() bool {
	_, ok := b.mutation.eval.(*compiled.Program)
	return ok
}

func hiddenOrUnknown(info fs.FileInfo) bool {
	name := info.Name()
	if strings.HasPrefix(name, ".") && name != "." {
		return true // hidden files and the ..data links of a mounted ConfigMap
	}
	if info.IsDir() {
		return false
	}
	switch path.Ext(name) {
	case ".rego", ".json", ".yaml", ".yml":
		return false
	}
	return true
}

// bundleFiles lists every file the loader reads, in a stable order, and
// checks the bundle's size. Like the loader it follows symbolic links, so a
// mounted ConfigMap (whose entries are links into a ..data directory) lists
// the same as a plain copy.
func bundleFiles(fsys fs.FS) ([]string, error) {
	var files []string
	var size int64
	var walk func(dir string, depth int) error
	walk = func(dir string, depth int) error {
		if depth > 16 {
			return fmt.Errorf("%s is nested more than 16 directories deep (a symbolic link loop?)", dir)
		}
		entries, err := fs.ReadDir(fsys, dir)
		if err != nil {
			return err
		}
		for _, e := range entries {
			p := path.Join(dir, e.Name())
			info, err := fs.Stat(fsys, p) // follows symbolic links
			if err != nil {
				return err
			}
			if hiddenOrUnknown(info) {
				continue
			}
			if info.IsDir() {
				if err := walk(p, depth+1); err != nil {
					return err
				}
				continue
			}
			files = append(files, p)
			size += info.Size()
		}
		return nil
	}
	if err := walk(".", 0); err != nil {
		return nil, err
	}
	if len(files) > maxBundleFiles || size > maxBundleSizeMB<<20 {
		return nil, fmt.Errorf("bundle is too large (%d files, %d bytes); the limit is %d files and %d MiB", len(files), size, maxBundleFiles, maxBundleSizeMB)
	}
	sort.Strings(files)
	return files, nil
}

// revisionOf hashes every file the loader reads, in a stable order.
func revisionOf(fsys fs.FS) (string, error) {
	files, err := bundleFiles(fsys)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for _, f := range files {
		content, err := fs.ReadFile(fsys, f)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", f, len(content))
		h.Write(content)
	}
	return hex.EncodeToString(h.Sum(nil))[:12], nil
}

// LoadLayered compiles the bundle in dir (the embedded one when dir is
// empty) with the files of overlayDir (when not empty) layered over it: a
// file of the overlay replaces the bundle's file of the same path, or is
// added. An installation's own data, such as the chart's config/install.yaml,
// replaces the bundle's default file this way.
func LoadLayered(ctx context.Context, dir, overlayDir string) (*Bundle, error) {
	b, _, _, err := loadFiles(ctx, dir, overlayDir)
	return b, err
}

func dirRevision(dir string) (string, error) {
	return revisionOf(os.DirFS(dir))
}
