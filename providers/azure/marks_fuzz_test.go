package azure

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/portico-lb/portico/providers"
)

// FuzzDescriptionMarks: the NSG rule description parser that decides
// ownership never panics, reads back what ruleDescription wrote for any key
// Kubernetes and the cluster-ID rules allow, and a
// description never claims a Service it does not name.
func FuzzDescriptionMarks(f *testing.F) {
	f.Add("portico.dev/managed-by=portico;portico.dev/cluster=c;portico.dev/service=ns/a", "c", "ns", "a")
	f.Add(";;==;", "c", "ns", "a")
	f.Add("", "", "", "")
	f.Fuzz(func(t *testing.T, desc, cluster, ns, name string) {
		key := providers.Key{ClusterID: cluster, Namespace: ns, Name: name}
		if providers.Owns(descriptionMarks(desc), key) && !strings.Contains(desc, ns+"/"+name) {
			t.Fatalf("%q claims %v without naming it", desc, key)
		}
		if !validKey(key) {
			return
		}
		if !providers.Owns(descriptionMarks(ruleDescription(key)), key) {
			t.Fatalf("the description written for %+v does not read back as owned", key)
		}
	})
}

// validKey: a key Portico can be given: DNS-1123 namespace and name (as the
// apiserver enforces) and a valid cluster ID.
func validKey(k providers.Key) bool {
	return providers.ValidateClusterID(k.ClusterID) == nil &&
		len(validation.IsDNS1123Label(k.Namespace)) == 0 && len(validation.IsDNS1123Label(k.Name)) == 0
}
