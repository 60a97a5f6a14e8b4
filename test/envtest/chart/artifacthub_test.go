package chart

import (
	"strings"
	"testing"

	"helm.sh/helm/v3/pkg/chart/loader"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/nsprov/nsprov/test/envtest/chartrender"
)

// TestArtifactHubAnnotations: the Artifact Hub annotations of Chart.yaml
// parse as Artifact Hub reads them, and the image they list is the one the
// chart installs by default.
func TestArtifactHubAnnotations(t *testing.T) {
	ch, err := loader.Load(chartrender.ChartDir())
	if err != nil {
		t.Fatal(err)
	}
	a := ch.Metadata.Annotations
	var images []struct {
		Name, Image string
		Platforms   []string
	}
	if err := yaml.UnmarshalStrict([]byte(a["artifacthub.io/images"]), &images); err != nil {
		t.Fatalf("artifacthub.io/images: %v", err)
	}
	objs := render(t, nil)
	containers, _, _ := unstructured.NestedSlice(find(t, objs, "Deployment", "nsprov").Object, "spec", "template", "spec", "containers")
	image, _, _ := unstructured.NestedString(containers[0].(map[string]any), "image")
	if len(images) != 1 || images[0].Image != image {
		t.Errorf("artifacthub.io/images %+v, want the Deployment's image %s", images, image)
	}
	var changes []struct{ Kind, Description string }
	if err := yaml.UnmarshalStrict([]byte(a["artifacthub.io/changes"]), &changes); err != nil {
		t.Fatalf("artifacthub.io/changes: %v", err)
	}
	for _, c := range changes {
		switch c.Kind {
		case "added", "changed", "deprecated", "removed", "fixed", "security":
		default:
			t.Errorf("artifacthub.io/changes: kind %q is not one Artifact Hub knows", c.Kind)
		}
		if c.Description == "" {
			t.Error("artifacthub.io/changes: a change without a description")
		}
	}
	var links []struct{ Name, URL string }
	if err := yaml.UnmarshalStrict([]byte(a["artifacthub.io/links"]), &links); err != nil || len(links) == 0 {
		t.Errorf("artifacthub.io/links: %v (%d links)", err, len(links))
	}
	var recs []struct{ URL string }
	if err := yaml.UnmarshalStrict([]byte(a["artifacthub.io/recommendations"]), &recs); err != nil || len(recs) == 0 {
		t.Errorf("artifacthub.io/recommendations: %v (%d)", err, len(recs))
	}
	for _, k := range []string{"artifacthub.io/containsSecurityUpdates", "artifacthub.io/prerelease"} {
		if v := a[k]; v != "true" && v != "false" {
			t.Errorf("%s = %q, want true or false", k, v)
		}
	}
	for k := range a {
		if !strings.HasPrefix(k, "artifacthub.io/") {
			t.Errorf("annotation %s is not Artifact Hub's", k)
		}
	}
}
