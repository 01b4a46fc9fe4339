package azure

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/portico-lb/portico/providers"
)

// FuzzDescriptionMarks: the NSG rule description parser that decides
// ownership never panics; a description claims a Service only when it names
// it or carries its hash; what ruleDescription writes for any key
// Kubernetes and the cluster-ID rules allow fits Azure's 140 characters,
// reads back as owned by that key, and by no key of another Service.
func FuzzDescriptionMarks(f *testing.F) {
	f.Add("managed-by=portico;cluster=c;service=ns/a", "c", "ns", "a")
	f.Add("managed-by=portico;cluster=c;service-sha256=00", "c", "ns", "a")
	f.Add(";;==;", "c", "ns", "a")
	f.Add("", "", "", "")
	f.Add("", "k8s-0123456789abcdef0123456789abcdef0123456789abcdef0123456789a", strings.Repeat("s", 63), strings.Repeat("n", 63))
	f.Fuzz(func(t *testing.T, desc, cluster, ns, name string) {
		key := providers.Key{ClusterID: cluster, Namespace: ns, Name: name}
		if owns(descriptionMarks(desc), key) && !strings.Contains(desc, ns+"/"+name) && !strings.Contains(desc, serviceHash(key)) {
			t.Fatalf("%q claims %v without naming it", desc, key)
		}
		if !validKey(key) {
			return
		}
		written := ruleDescription(key)
		if len(written) > maxDescription {
			t.Fatalf("the description written for %+v has %d characters, Azure allows %d", key, len(written), maxDescription)
		}
		if !owns(descriptionMarks(written), key) {
			t.Fatalf("the description written for %+v does not read back as owned", key)
		}
		other := key
		other.Name = name + "x"
		if len(validation.IsDNS1123Label(other.Name)) == 0 && owns(descriptionMarks(written), other) {
			t.Fatalf("the description written for %+v also claims %+v", key, other)
		}
	})
}

// validKey: a key Portico can be given: DNS-1123 namespace and name (as the
// apiserver enforces) and a valid cluster ID.
func validKey(k providers.Key) bool {
	return providers.ValidateClusterID(k.ClusterID) == nil &&
		len(validation.IsDNS1123Label(k.Namespace)) == 0 && len(validation.IsDNS1123Label(k.Name)) == 0
}
