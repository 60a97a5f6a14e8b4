package policy

import (
	"context"
	"fmt"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/topdown"

	"github.com/nsprov/nsprov/internal/policy/compiled"
)

// The evaluators a bundle can use.
const (
	// EvaluatorCompiled runs OPA's plan of each query (package compiled).
	EvaluatorCompiled = "compiled"
	// EvaluatorTopdown is OPA's own evaluator.
	EvaluatorTopdown = "topdown"
)

// Evaluator evaluates one prepared query of a bundle. Both evaluators
// implement it: OPA's topdown (topdownQuery) and the compiled plan
// (compiled.Program); a bundle picks one when it loads.
type Evaluator interface {
	// Eval evaluates the query on input (nil: no input) and calls yield with
	// each result, an object from the query's variable names to their
	// values, until yield returns false. A builtin's error fails the
	// evaluation (as rego's StrictBuiltinErrors(true)), and it stops when ctx
	// is cancelled.
	Eval(ctx context.Context, input ast.Value, yield func(ast.Object) bool) error
}

var (
	_ Evaluator = (*topdownQuery)(nil)
	_ Evaluator = (*compiled.Program)(nil)
)

// newEvaluator prepares a query (Rego text) of a compiled bundle with the
// named evaluator; data is the whole data document, which store holds too.
func newEvaluator(ctx context.Context, name string, compiler *ast.Compiler, store storage.Store, data ast.Value, text string) (Evaluator, error) {
	switch name {
	case EvaluatorCompiled:
		return compiled.Compile(ctx, compiler, store, data, text)
	case EvaluatorTopdown:
		return newTopdownQuery(compiler, store, &dataCache{}, text)
	}
	return nil, fmt.Errorf("policy evaluator %q is not known; use %s or %s", name, EvaluatorCompiled, EvaluatorTopdown)
}

// topdownQuery is a query compiled against a bundle and evaluated with OPA's
// evaluator (topdown) directly. The rego package's prepared queries do the
// same evaluation, but around it they start a goroutine to watch the
// context, collect metrics and convert every result to JSON-like Go values;
// on nsprov's short queries that is a large share of the cost.
type topdownQuery struct {
	body     ast.Body
	compiler *ast.Compiler
	store    storage.Store
	data     *dataCache
	// names holds the term of each variable's name, made once.
	names map[ast.Var]*ast.Term
	// strict: a builtin's error fails the evaluation (nsprov's mode);
	// otherwise the call is undefined, OPA's default. The compliance tests
	// run OPA's cases in both.
	strict bool
}

// newTopdownQuery parses and compiles text, a Rego query whose results are
// read from its variables.
func newTopdownQuery(compiler *ast.Compiler, store storage.Store, data *dataCache, text string) (*topdownQuery, error) {
	parsed, err := ast.ParseBodyWithOpts(text, ast.ParserOptions{RegoVersion: ast.RegoV1})
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", text, err)
	}
	qc := compiler.QueryCompiler()
	body, err := qc.Compile(parsed)
	if err != nil {
		return nil, fmt.Errorf("compiling %s: %w", text, err)
	}
	q := &topdownQuery{body: body, compiler: compiler, store: store, data: data, names: map[ast.Var]*ast.Term{}, strict: true}
	// Results name the query's own variables, as the rego package reports
	// them: declared variables under their names before the compiler
	// rewrote them, and none of the compiler's own.
	rewritten := qc.RewrittenVars()
	ast.WalkVars(body, func(v ast.Var) bool {
		name := v
		if rw, ok := rewritten[v]; ok {
			name = rw
		}
		if !name.IsGenerated() && !name.IsWildcard() {
			q.names[v] = ast.StringTerm(string(name))
		}
		return false
	})
	return q, nil
}

var noMetrics = metrics.NoOp()

// Eval implements Evaluator.
func (q *topdownQuery) Eval(ctx context.Context, input ast.Value, yield func(ast.Object) bool) error {
	txn, err := q.store.NewTransaction(ctx)
	if err != nil {
		return err
	}
	defer q.store.Abort(ctx, txn)
	vc := acquireQueryCache()
	defer vc.release()
	tq := topdown.NewQuery(q.body).
		WithCompiler(q.compiler).
		WithStore(q.store).
		WithTransaction(txn).
		WithMetrics(noMetrics).
		WithStrictBuiltinErrors(q.strict).
		WithVirtualCache(vc).
		WithBaseCache(q.data)
	if input != nil {
		tq = tq.WithInput(ast.NewTerm(input))
	}
	if ctx.Done() != nil {
		if err := ctx.Err(); err != nil {
			return err
		}
		c := topdown.NewCancel()
		stop := context.AfterFunc(ctx, c.Cancel)
		defer stop()
		tq = tq.WithCancel(c)
	}
	more := true
	return tq.Iter(ctx, func(qr topdown.QueryResult) error {
		if more {
			more = yield(q.object(qr))
		}
		return nil
	})
}

// object turns topdown's bindings into an object of variable names.
func (q *topdownQuery) object(qr topdown.QueryResult) ast.Object {
	var buf [4][2]*ast.Term
	items := buf[:0]
	for v, t := range qr {
		if name, ok := q.names[v]; ok {
			items = append(items, ast.Item(name, t))
		}
	}
	return ast.NewObject(items...)
}

// Evaluation caches. OPA's evaluator remembers, during one query, the value
// of every rule it has evaluated (the virtual cache) and every base document
// it has read from the store (the base cache). Its default caches are tries
// allocated afresh for every query; on nsprov's short queries they account
// for a large share of the allocations. The caches below keep the same
// semantics with reusable memory.

// queryCache is the virtual cache of one query: a stack of frames, each
// mapping a rule's reference to its value or to undefined. It is reset and
// reused between queries.
type queryCache struct {
	frames []vcFrame
	depth  int
}

type vcFrame struct {
	index   map[int]int32 // ref hash -> 1 + position of the newest entry with that hash
	entries []vcEntry
	terms   []*ast.Term // backing store of the entries' refs
}

type vcEntry struct {
	ref       ast.Ref
	value     *ast.Term
	undefined bool
	next      int32 // 1 + position of the previous entry with the same hash, 0 for none
}

var queryCaches = sync.Pool{New: func() any { return &queryCache{} }}

// acquireQueryCache returns an empty virtual cache with one frame.
func acquireQueryCache() *queryCache {
	c := queryCaches.Get().(*queryCache)
	c.Push()
	return c
}

// release empties the cache and returns it to the pool.
func (c *queryCache) release() {
	for c.depth > 0 {
		c.Pop()
	}
	queryCaches.Put(c)
}

// Push implements topdown.VirtualCache.
func (c *queryCache) Push() {
	if c.depth == len(c.frames) {
		c.frames = append(c.frames, vcFrame{index: map[int]int32{}})
	}
	c.depth++
}

// Pop implements topdown.VirtualCache.
func (c *queryCache) Pop() {
	if c.depth == 0 {
		return
	}
	c.depth--
	f := &c.frames[c.depth]
	clear(f.index)
	clear(f.entries) // drop references to values so the pool keeps no garbage alive
	f.entries = f.entries[:0]
	clear(f.terms)
	f.terms = f.terms[:0]
}

func (c *queryCache) top() *vcFrame { return &c.frames[c.depth-1] }

func (f *vcFrame) find(ref ast.Ref, h int) *vcEntry {
	for i := f.index[h]; i > 0; i = f.entries[i-1].next {
		if e := &f.entries[i-1]; e.ref.Equal(ref) {
			return e
		}
	}
	return nil
}

// Get implements topdown.VirtualCache.
func (c *queryCache) Get(ref ast.Ref) (*ast.Term, bool) {
	e := c.top().find(ref, ref.Hash())
	if e == nil {
		return nil, false
	}
	if e.undefined {
		return nil, true
	}
	return e.value, false
}

// Put implements topdown.VirtualCache.
func (c *queryCache) Put(ref ast.Ref, value *ast.Term) {
	f := c.top()
	h := ref.Hash()
	if e := f.find(ref, h); e != nil {
		// As OPA's own cache: a value replaces the value, nil marks undefined.
		if value != nil {
			e.value = value
		} else {
			e.undefined = true
		}
		return
	}
	start := len(f.terms)
	f.terms = append(f.terms, ref...)
	f.entries = append(f.entries, vcEntry{
		ref:       f.terms[start:len(f.terms):len(f.terms)],
		value:     value,
		undefined: value == nil,
		next:      f.index[h],
	})
	f.index[h] = int32(len(f.entries))
}

// Keys implements topdown.VirtualCache.
func (c *queryCache) Keys() []ast.Ref {
	var keys []ast.Ref
	for _, e := range c.top().entries {
		if e.value != nil {
			keys = append(keys, e.ref.Copy())
		}
	}
	return keys
}

// dataCache is a bundle's base cache: the base documents (data) its queries
// have read from the store, shared by every query of the bundle. A bundle's
// store never changes after loading (a policy reload builds a new bundle), so
// a document read once stays valid for the bundle's lifetime and later
// queries read it without touching the store. Only documents that exist are
// cached, so its size is bounded by the bundle's data.
type dataCache struct {
	mu      sync.RWMutex
	entries map[int][]dataEntry
}

type dataEntry struct {
	ref   ast.Ref
	value ast.Value
}

// Get implements topdown.BaseCache: the value at ref, found at ref or inside
// a cached document that contains it, or nil.
func (c *dataCache) Get(ref ast.Ref) ast.Value {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if len(c.entries) == 0 {
		return nil
	}
	h := 0
	for i := range ref {
		h += ref[i].Value.Hash()
		for _, e := range c.entries[h] {
			if len(e.ref) != i+1 || !e.ref.Equal(ref[:i+1]) {
				continue
			}
			if i+1 == len(ref) {
				return e.value
			}
			v, err := e.value.Find(ref[i+1:])
			if err != nil {
				return nil
			}
			return v
		}
	}
	return nil
}

// Put implements topdown.BaseCache.
func (c *dataCache) Put(ref ast.Ref, value ast.Value) {
	h := ref.Hash()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.entries[h] {
		if e.ref.Equal(ref) {
			return
		}
	}
	if c.entries == nil {
		c.entries = map[int][]dataEntry{}
	}
	c.entries[h] = append(c.entries[h], dataEntry{ref: ref.Copy(), value: value})
}
