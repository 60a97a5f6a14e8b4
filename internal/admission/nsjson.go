package admission

import (
	"encoding/json"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// maxScanDepth is how deeply nested a value the direct decoder skips; a
// deeper one goes to the reflection decoder (encoding/json allows 10000).
const maxScanDepth = 256

// scanNamespace decodes the fields of a Namespace that the policy reads
// (metadata.name, uid, labels, annotations, deletionTimestamp and
// status.phase) straight from the JSON of an admission request, skipping
// every other field without allocating, and allocates the strings it keeps
// together, once. It is the reflection decoder's (decodeNamespaceReflect)
// fast path and decides exactly as that one does: keys match
// case-sensitively, the last of duplicate map keys wins, an empty labels or
// annotations object is an empty map and null is none.
//
// ok is false for anything it does not decide itself: malformed JSON,
// wrong types, null where a string is expected, a repeated metadata or
// status field, escaped keys, a string of invalid UTF-8, nesting deeper
// than maxScanDepth. The caller then decodes with the reflection decoder,
// which either accepts the object or says what is wrong with it.
func scanNamespace(raw []byte) (ns *corev1.Namespace, ok bool) {
	if len(raw) > math.MaxInt32 {
		return nil, false
	}
	s := scanner{b: raw, refs: make([]strRef, 0, 32)}
	s.ws()
	if !s.consume('{') {
		return nil, false
	}
	ns = &corev1.Namespace{}
	var seenMeta, seenStatus bool
	ok = s.object(func(key []byte) bool {
		switch string(key) {
		case "metadata":
			if seenMeta {
				return false
			}
			seenMeta = true
			return s.expect('{') && s.object(func(key []byte) bool { return s.metadataField(ns, key) })
		case "status":
			if seenStatus {
				return false
			}
			seenStatus = true
			return s.expect('{') && s.object(func(key []byte) bool {
				if string(key) != "phase" {
					return s.skip(1)
				}
				var ok bool
				s.phase, ok = s.str()
				return ok
			})
		default:
			return s.skip(1)
		}
	})
	if !ok {
		return nil, false
	}
	s.ws()
	if s.i != len(s.b) {
		return nil, false
	}
	s.finish(ns)
	return ns, true
}

// scanner reads JSON from b at i.
type scanner struct {
	b    []byte
	i    int
	seen uint8 // metadata fields seen, as bits
	// refs are the strings kept; name, uid and phase are indexes of refs
	// (0: none), the members of labels and annotations are refs of their
	// kind (the key, then the value).
	refs             []strRef
	name, uid, phase int
	labels, annots   mapState
	nLabels, nAnnots int
	// decoded are the kept strings that had escapes.
	decoded []string
}

// strRef is a string kept: b[start:end], or decoded[-start-1].
type strRef struct {
	start, end int32
	kind       refKind
}

// refKind says what a kept string is.
type refKind uint8

const (
	refValue refKind = iota
	refLabelKey
	refAnnotationKey
)

// mapState says whether labels or annotations were an object.
type mapState uint8

const (
	mapNone mapState = iota
	mapObject
)

// finish fills ns with the strings kept, allocated together.
func (s *scanner) finish(ns *corev1.Namespace) {
	n := 0
	for _, r := range s.refs {
		if r.start >= 0 {
			n += int(r.end - r.start)
		}
	}
	var sb strings.Builder
	sb.Grow(n)
	for _, r := range s.refs {
		if r.start >= 0 {
			sb.Write(s.b[r.start:r.end])
		}
	}
	all := sb.String()
	if s.labels == mapObject {
		ns.Labels = make(map[string]string, s.nLabels)
	}
	if s.annots == mapObject {
		ns.Annotations = make(map[string]string, s.nAnnots)
	}
	off := 0
	var key string
	var into map[string]string
	for i, r := range s.refs {
		var v string
		if r.start >= 0 {
			v = all[off : off+int(r.end-r.start)]
			off += int(r.end - r.start)
		} else {
			v = s.decoded[-r.start-1]
		}
		switch {
		case r.kind == refLabelKey:
			key, into = v, ns.Labels
		case r.kind == refAnnotationKey:
			key, into = v, ns.Annotations
		case into != nil:
			into[key] = v
			into = nil
		case i+1 == s.name:
			ns.Name = v
		case i+1 == s.uid:
			ns.UID = types.UID(v)
		case i+1 == s.phase:
			ns.Status.Phase = corev1.NamespacePhase(v)
		}
	}
}

// str returns the string of a kept string, without keeping it.
func (s *scanner) string(ref int) string {
	r := s.refs[ref-1]
	if r.start < 0 {
		return s.decoded[-r.start-1]
	}
	return string(s.b[r.start:r.end])
}

const (
	seenName = 1 << iota
	seenUID
	seenLabels
	seenAnnotations
	seenDeletion
)

func (s *scanner) metadataField(ns *corev1.Namespace, key []byte) bool {
	var bit uint8
	switch string(key) {
	case "name":
		bit = seenName
	case "uid":
		bit = seenUID
	case "labels":
		bit = seenLabels
	case "annotations":
		bit = seenAnnotations
	case "deletionTimestamp":
		bit = seenDeletion
	default:
		return s.skip(1)
	}
	if s.seen&bit != 0 {
		return false
	}
	s.seen |= bit
	var ok bool
	switch bit {
	case seenName:
		s.name, ok = s.str()
		return ok
	case seenUID:
		s.uid, ok = s.str()
		return ok
	case seenLabels:
		s.labels, ok = s.stringMap(false)
		return ok
	case seenAnnotations:
		s.annots, ok = s.stringMap(true)
		return ok
	default:
		s.ws()
		if s.literal("null") {
			return true
		}
		ref, ok := s.str()
		if !ok {
			return false
		}
		t, err := time.Parse(time.RFC3339, s.string(ref))
		if err != nil {
			return false
		}
		ns.DeletionTimestamp = &metav1.Time{Time: t.Local()}
		return true
	}
}

// stringMap reads null (mapNone) or an object of strings into entries.
func (s *scanner) stringMap(annotations bool) (mapState, bool) {
	s.ws()
	if s.literal("null") {
		return mapNone, true
	}
	if !s.consume('{') {
		return mapNone, false
	}
	kind := refLabelKey
	if annotations {
		kind = refAnnotationKey
	}
	ok := s.object(func(key []byte) bool {
		start := int32(cap(s.b) - cap(key)) // key is a slice of b
		s.keep(strRef{start: start, end: start + int32(len(key)), kind: kind})
		_, ok := s.str()
		if annotations {
			s.nAnnots++
		} else {
			s.nLabels++
		}
		return ok
	})
	return mapObject, ok
}

// keep adds a string kept and returns its index.
func (s *scanner) keep(r strRef) int {
	s.refs = append(s.refs, r)
	return len(s.refs)
}

// object reads the members of an object whose '{' has been read, calling
// field for each key with the scanner before its value; field reads the
// value.
func (s *scanner) object(field func(key []byte) bool) bool {
	s.ws()
	if s.consume('}') {
		return true
	}
	for {
		s.ws()
		key, ok := s.rawKey()
		if !ok {
			return false
		}
		s.ws()
		if !s.consume(':') || !field(key) {
			return false
		}
		s.ws()
		if s.consume('}') {
			return true
		}
		if !s.consume(',') {
			return false
		}
	}
}

// rawKey reads a key of valid UTF-8 without escapes.
func (s *scanner) rawKey() ([]byte, bool) {
	if !s.consume('"') {
		return nil, false
	}
	start := s.i
	ascii := true
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			key := s.b[start : s.i-1]
			return key, ascii || utf8.Valid(key)
		case c == '\\' || c < 0x20:
			return nil, false
		case c >= 0x80:
			ascii = false
		}
		s.i++
	}
	return nil, false
}

// str reads a string value and keeps it. A string with escapes is
// unquoted by encoding/json, so it reads exactly as the reflection decoder
// reads it; one of invalid UTF-8 (which encoding/json replaces) is not
// read here.
func (s *scanner) str() (int, bool) {
	s.ws()
	if !s.consume('"') {
		return 0, false
	}
	start := s.i
	escaped := false
	ascii := true
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			if escaped {
				var v string
				if err := json.Unmarshal(s.b[start-1:s.i], &v); err != nil {
					return 0, false
				}
				s.decoded = append(s.decoded, v)
				return s.keep(strRef{start: int32(-len(s.decoded))}), true
			}
			if !ascii && !utf8.Valid(s.b[start:s.i-1]) {
				return 0, false
			}
			return s.keep(strRef{start: int32(start), end: int32(s.i - 1)}), true
		case c == '\\':
			if !s.escape() {
				return 0, false
			}
			escaped = true
			continue
		case c < 0x20:
			return 0, false
		case c >= 0x80:
			ascii = false
		}
		s.i++
	}
	return 0, false
}

// escape checks the escape sequence at i and moves past it.
func (s *scanner) escape() bool {
	if s.i+1 >= len(s.b) {
		return false
	}
	switch s.b[s.i+1] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		s.i += 2
		return true
	case 'u':
		if s.i+6 > len(s.b) {
			return false
		}
		for _, h := range s.b[s.i+2 : s.i+6] {
			if !isHex(h) {
				return false
			}
		}
		s.i += 6
		return true
	}
	return false
}

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' }

// skip checks and moves past any JSON value.
func (s *scanner) skip(depth int) bool {
	if depth > maxScanDepth {
		return false
	}
	s.ws()
	if s.i >= len(s.b) {
		return false
	}
	switch c := s.b[s.i]; {
	case c == '{':
		s.i++
		return s.object(func([]byte) bool { return s.skip(depth + 1) })
	case c == '[':
		s.i++
		s.ws()
		if s.consume(']') {
			return true
		}
		for {
			if !s.skip(depth + 1) {
				return false
			}
			s.ws()
			if s.consume(']') {
				return true
			}
			if !s.consume(',') {
				return false
			}
		}
	case c == '"':
		s.i++
		for s.i < len(s.b) {
			c := s.b[s.i]
			switch {
			case c == '"':
				s.i++
				return true
			case c == '\\':
				if !s.escape() {
					return false
				}
				continue
			case c < 0x20:
				return false
			}
			s.i++
		}
		return false
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	default:
		return s.number()
	}
}

// number moves past a JSON number: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *scanner) number() bool {
	s.consume('-')
	switch {
	case s.consume('0'):
	case s.i < len(s.b) && '1' <= s.b[s.i] && s.b[s.i] <= '9':
		s.digits()
	default:
		return false
	}
	if s.consume('.') && !s.digits() {
		return false
	}
	if s.consume('e') || s.consume('E') {
		if !s.consume('+') {
			s.consume('-')
		}
		if !s.digits() {
			return false
		}
	}
	return true
}

// digits moves past one or more digits.
func (s *scanner) digits() bool {
	start := s.i
	for s.i < len(s.b) && '0' <= s.b[s.i] && s.b[s.i] <= '9' {
		s.i++
	}
	return s.i > start
}

// literal moves past lit if it comes next.
func (s *scanner) literal(lit string) bool {
	if len(s.b)-s.i >= len(lit) && string(s.b[s.i:s.i+len(lit)]) == lit {
		s.i += len(lit)
		return true
	}
	return false
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// consume moves past c if it comes next.
func (s *scanner) consume(c byte) bool {
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// expect is consume after whitespace.
func (s *scanner) expect(c byte) bool {
	s.ws()
	return s.consume(c)
}
