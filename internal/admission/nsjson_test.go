package admission

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/nsprov/nsprov/internal/benchcpu"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/nsprov/nsprov/internal/testutil"
)

// nsjsonCases are objects on which the direct decoder must decide as the
// reflection decoder does: ordinary Namespaces as the API server sends them,
// and every corner of JSON where the two could differ.
var nsjsonCases = []string{
	`{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"payments-dev","uid":"6c4f","labels":{"kubernetes.io/metadata.name":"payments-dev"},"annotations":{"nsprov.io/team":"payments","nsprov.io/environment":"development"}},"spec":{"finalizers":["kubernetes"]},"status":{"phase":"Active"}}`,
	`{"metadata":{"name":"x","managedFields":[{"manager":"kubectl","operation":"Update","apiVersion":"v1","time":"2024-01-02T03:04:05Z","fieldsType":"FieldsV1","fieldsV1":{"f:metadata":{"f:labels":{".":{},"f:a":{}}}}}],"creationTimestamp":"2024-01-02T03:04:05Z","resourceVersion":"12","generation":-1.5e+3,"deletionGracePeriodSeconds":0,"x":[true,false,null,0,-0.25E-2,"s\"\\\/\b\f\n\r\t\u00e9"]}}`,
	`{"metadata":{"name":"x","deletionTimestamp":"2024-01-02T03:04:05Z"},"status":{"phase":"Terminating"}}`,
	`{"metadata":{"name":"x","deletionTimestamp":"2024-01-02T03:04:05+02:00"}}`,
	`{"metadata":{"name":"x","deletionTimestamp":null}}`,
	`{"metadata":{"name":"x","deletionTimestamp":"yesterday"}}`,
	`{"metadata":{"name":"x","deletionTimestamp":5}}`,
	`{"metadata":{"name":"x","labels":{}}}`,
	"{ \"metadata\" :\t{\"labels\" : {\"a\" : \"1\" ,\n\"bb\"\r:\"22\"} , \"annotations\":{ \"k\"  :  \"v\" } } , \"status\" : { \"phase\" : \"Active\" } }",
	`{"metadata":{"name":"x","labels":null,"annotations":{}}}`,
	`{"metadata":{"labels":{"a":"1","a":"2"}}}`,
	`{"metadata":{"labels":{"a":null}}}`,
	`{"metadata":{"labels":{"a":1}}}`,
	`{"metadata":{"labels":[]}}`,
	`{"metadata":{"labels":"a"}}`,
	`{"metadata":{"labels":{"a":"1"},"labels":{"b":"2"}}}`,
	`{"metadata":{"labels":{"a":"1"},"labels":null}}`,
	`{"metadata":{"name":"a"},"metadata":{"uid":"u"}}`,
	`{"metadata":{"name":"a","name":"b"}}`,
	`{"metadata":{"name":null}}`,
	`{"metadata":{"name":5}}`,
	`{"metadata":null}`,
	`{"metadata":5}`,
	`{"metadata":{}}`,
	`{"Metadata":{"name":"a"},"metadata":{"Name":"b","LABELS":{"a":"b"}}}`,
	`{"met\u0061data":{"n\u0061me":"a"}}`,
	`{"metadata":{"name":"caf\u00e9","annotations":{"k\"ey":"v\u2028","\ud83d\ude00":"\ud83d","e":"\udc00x"}}}`,
	`{"metadata":{"name":"caf` + "\xc3\xa9" + `","annotations":{"k":"` + "\xff\xfe" + `","` + "\xff" + `":"v"}}}`,
	`{"metadata":{"name":"a` + "\x01" + `"}}`,
	`{"metadata":{"name":"a\x"}}`,
	`{"metadata":{"name":"a\u12"}}`,
	`{"status":{"phase":null}}`,
	`{"status":{"phase":"Active","phase":"Terminating","other":{}}}`,
	`{"status":null}`,
	`{"status":{"phase":1}}`,
	`{"status":{},"status":{"phase":"Active"}}`,
	`null`, `true`, `"ns"`, `[]`, `5`, `{}`, `{`, `}`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{,}`, `{"a":1}x`, `{"a":1} `, " \t\r\n{}\n",
	`{"a":01}`, `{"a":-}`, `{"a":1.}`, `{"a":.5}`, `{"a":1e}`, `{"a":1e+}`, `{"a":-0}`, `{"a":tru}`, `{"a":nul}`, `{"a":truex}`,
	`{"a":[1,]}`, `{"a":[,1]}`, `{"a":[1 2]}`, `{"a":[[[[]]]]}`, `{"a":"unterminated}`, `{"a":"\`,
	`{"metadata":{"name":"a"}` + strings.Repeat(`,"x":1`, 3) + `}`,
	`{"x":` + strings.Repeat("[", 300) + strings.Repeat("]", 300) + `,"metadata":{"name":"deep"}}`,
	`{"x":` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + `,"metadata":{"name":"too-deep"}}`,
	"\xef\xbb\xbf{}",
}

// decodeBoth decodes raw with the direct decoder (falling back as
// decodeNamespace does) and with the reflection decoder alone.
func decodeBoth(raw []byte) (fast *corev1.Namespace, fastErr error, slow *corev1.Namespace, slowErr error) {
	fast, fastErr = decodeNamespace(raw, "object")
	slow, slowErr = decodeNamespaceReflect(raw, "object")
	return
}

func sameDecoding(t *testing.T, raw []byte) {
	t.Helper()
	if len(raw) == 0 {
		return
	}
	fast, fastErr, slow, slowErr := decodeBoth(raw)
	if (fastErr == nil) != (slowErr == nil) {
		t.Fatalf("%q: direct decoder error %v, reflection decoder error %v", raw, fastErr, slowErr)
	}
	if fastErr != nil {
		if fastErr.Error() != slowErr.Error() {
			t.Fatalf("%q: error %q, want %q", raw, fastErr, slowErr)
		}
		return
	}
	if !reflect.DeepEqual(fast, slow) {
		t.Fatalf("%q: direct decoder\n%+v\nreflection decoder\n%+v", raw, fast, slow)
	}
	// Empty and absent maps differ for the patch, so DeepEqual's nil
	// versus empty distinction is what is wanted; check it explicitly too.
	if (fast.Labels == nil) != (slow.Labels == nil) || (fast.Annotations == nil) != (slow.Annotations == nil) {
		t.Fatalf("%q: nil maps differ", raw)
	}
}

// The direct decoder decides every case as the reflection decoder: the same
// Namespace, or the same error.
func TestScanNamespaceSameAsReflection(t *testing.T) {
	for _, c := range nsjsonCases {
		sameDecoding(t, []byte(c))
	}
	// The request objects of the fuzz corpus, and the tests' Namespaces.
	files, _ := filepath.Glob("testdata/fuzz/FuzzAdmissionReview/*")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, obj := range reviewObjects(b) {
			sameDecoding(t, obj)
		}
	}
	sameDecoding(t, testutil.NamespaceJSON(t, "payments-dev", paymentsDev(), map[string]string{"a": "b"}))
}

// reviewObjects pulls request.object and request.oldObject out of a fuzz
// corpus file of FuzzAdmissionReview (a go test fuzz v1 file of one []byte).
func reviewObjects(file []byte) [][]byte {
	var out [][]byte
	for line := range strings.SplitSeq(string(file), "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "[]byte(") {
			continue
		}
		body, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(line, "[]byte("), ")"))
		if err != nil {
			continue
		}
		var ar admissionv1.AdmissionReview
		if json.Unmarshal([]byte(body), &ar) != nil || ar.Request == nil {
			continue
		}
		out = append(out, ar.Request.Object.Raw, ar.Request.OldObject.Raw)
	}
	return out
}

// The fast path really is taken for an ordinary Namespace: a regression
// that sent every object to the reflection decoder would pass the
// differential tests.
func TestScanNamespaceDecidesOrdinaryObjects(t *testing.T) {
	for _, raw := range [][]byte{
		[]byte(nsjsonCases[0]), []byte(nsjsonCases[1]), []byte(nsjsonCases[2]),
		testutil.NamespaceJSON(t, "payments-dev", paymentsDev(), map[string]string{"a": "b"}),
	} {
		if _, ok := scanNamespace(raw); !ok {
			t.Errorf("the direct decoder leaves %s to the reflection decoder", raw)
		}
	}
}

// FuzzDecodeNamespace checks the direct decoder against the reflection
// decoder on arbitrary objects.
func FuzzDecodeNamespace(f *testing.F) {
	for _, c := range nsjsonCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, raw []byte) { sameDecoding(t, raw) })
}

// BenchmarkDecodeNamespace compares the direct decoder with the reflection
// decoder on a Namespace as the API server sends it (with managedFields).
func BenchmarkDecodeNamespace(b *testing.B) {
	raw := []byte(`{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"payments-dev","uid":"6c4f3d2a-0b1e-4c8f-9a7d-2e5b6c7d8e9f","resourceVersion":"4711","creationTimestamp":"2025-01-02T03:04:05Z","labels":{"kubernetes.io/metadata.name":"payments-dev","nsprov.io/team":"payments"},"annotations":{"nsprov.io/team":"payments","nsprov.io/environment":"development","nsprov.io/features":"istio, Monitoring-Enhanced"},"managedFields":[{"manager":"kubectl-create","operation":"Update","apiVersion":"v1","time":"2025-01-02T03:04:05Z","fieldsType":"FieldsV1","fieldsV1":{"f:metadata":{"f:annotations":{".":{},"f:nsprov.io/environment":{},"f:nsprov.io/features":{},"f:nsprov.io/team":{}},"f:labels":{".":{},"f:kubernetes.io/metadata.name":{}}}}}]},"spec":{"finalizers":["kubernetes"]},"status":{"phase":"Active"}}`)
	for _, d := range []struct {
		name   string
		decode func([]byte, string) (*corev1.Namespace, error)
	}{{"direct", decodeNamespace}, {"reflection", decodeNamespaceReflect}} {
		b.Run(d.name, func(b *testing.B) {
			b.ReportAllocs()
			cpu := benchcpu.Now()
			for b.Loop() {
				if _, err := d.decode(raw, "object"); err != nil {
					b.Fatal(err)
				}
			}
			benchcpu.Report(b, cpu)
		})
	}
}
