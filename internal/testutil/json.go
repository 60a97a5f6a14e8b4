package testutil

import (
	"encoding/json"
	"reflect"
	"testing"
)

// MustJSON is v encoded as JSON; it fails the test when v does not encode.
func MustJSON(tb testing.TB, v any) string {
	tb.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	return string(raw)
}

// JSONEqual reports whether got and want have the same JSON encoding, up to
// the order of object keys.
func JSONEqual(tb testing.TB, got, want any) bool {
	tb.Helper()
	norm := func(v any) any {
		var out any
		if err := json.Unmarshal([]byte(MustJSON(tb, v)), &out); err != nil {
			tb.Fatal(err)
		}
		return out
	}
	return reflect.DeepEqual(norm(got), norm(want))
}
