package gcp

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/portico-lb/portico/providers"
)

// FuzzMarks: the description parser that decides ownership never panics,
// reads back exactly what description wrote for any key, and never lets a
// description claim a Service it does not name.
func FuzzMarks(f *testing.F) {
	f.Add(`{"portico.dev/cluster":"c","portico.dev/service":"ns/a","portico.dev/managed-by":"portico"}`, "c", "ns", "a")
	f.Add(`{"portico.dev/service":1}`, "c", "ns", "a")
	f.Add(`null`, "", "", "")
	f.Fuzz(func(t *testing.T, desc, cluster, ns, name string) {
		key := providers.Key{ClusterID: cluster, Namespace: ns, Name: name}
		if providers.Owns(Marks(desc), key) && !strings.Contains(desc, "portico") {
			t.Fatalf("%q claims %v without Portico's marks", desc, key)
		}
		if !validKey(key) {
			return
		}
		if !providers.Owns(Marks(description(key, map[string]string{"ports": "80"})), key) {
			t.Fatalf("the description written for %+v does not read back as owned", key)
		}
		other := key
		other.ClusterID += "-other"
		if providers.Owns(Marks(description(key, nil)), other) {
			t.Fatalf("a description of cluster %q claims cluster %q", key.ClusterID, other.ClusterID)
		}
	})
}

// validKey: a key Portico can be given: DNS-1123 namespace and name (as the
// apiserver enforces) and a valid cluster ID.
func validKey(k providers.Key) bool {
	return providers.ValidateClusterID(k.ClusterID) == nil &&
		len(validation.IsDNS1123Label(k.Namespace)) == 0 && len(validation.IsDNS1123Label(k.Name)) == 0
}
