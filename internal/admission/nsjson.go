package admission

import (
	"encoding/json"
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
// every other field without allocating. It is the reflection decoder's
// (decodeNamespaceReflect) fast path and decides exactly as that one does:
// keys match case-sensitively, the last of duplicate map keys wins, an
// empty labels or annotations object is an empty map and null is none.
//
// ok is false for anything it does not decide itself: malformed JSON,
// wrong types, null where a string is expected, a repeated metadata or
// status field, escaped keys, a string of invalid UTF-8, nesting deeper
// than maxScanDepth. The caller then decodes with the reflection decoder,
// which either accepts the object or says what is wrong with it.
func scanNamespace(raw []byte) (ns *corev1.Namespace, ok bool) {
	s := scanner{b: raw}
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
				v, ok := s.str()
				ns.Status.Phase = corev1.NamespacePhase(v)
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
	return ns, true
}

// scanner reads JSON from b at i.
type scanner struct {
	b    []byte
	i    int
	seen uint8 // metadata fields seen, as bits
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
	switch bit {
	case seenName:
		v, ok := s.str()
		ns.Name = v
		return ok
	case seenUID:
		v, ok := s.str()
		ns.UID = types.UID(v)
		return ok
	case seenLabels:
		m, ok := s.stringMap()
		ns.Labels = m
		return ok
	case seenAnnotations:
		m, ok := s.stringMap()
		ns.Annotations = m
		return ok
	default:
		s.ws()
		if s.literal("null") {
			return true
		}
		v, ok := s.str()
		if !ok {
			return false
		}
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return false
		}
		ns.DeletionTimestamp = &metav1.Time{Time: t.Local()}
		return true
	}
}

// stringMap reads null (nil) or an object of strings.
func (s *scanner) stringMap() (map[string]string, bool) {
	s.ws()
	if s.literal("null") {
		return nil, true
	}
	if !s.consume('{') {
		return nil, false
	}
	m := map[string]string{}
	ok := s.object(func(key []byte) bool {
		v, ok := s.str()
		if ok {
			m[string(key)] = v
		}
		return ok
	})
	return m, ok
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

// str reads a string value. A string with escapes is unquoted by
// encoding/json, so it reads exactly as the reflection decoder reads it;
// one of invalid UTF-8 (which encoding/json replaces) is not read here.
func (s *scanner) str() (string, bool) {
	s.ws()
	if !s.consume('"') {
		return "", false
	}
	start := s.i
	escaped := false
	ascii := true
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			body := s.b[start : s.i-1]
			if escaped {
				var v string
				if err := json.Unmarshal(s.b[start-1:s.i], &v); err != nil {
					return "", false
				}
				return v, true
			}
			if !ascii && !utf8.Valid(body) {
				return "", false
			}
			return string(body), true
		case c == '\\':
			if !s.escape() {
				return "", false
			}
			escaped = true
			continue
		case c < 0x20:
			return "", false
		case c >= 0x80:
			ascii = false
		}
		s.i++
	}
	return "", false
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
