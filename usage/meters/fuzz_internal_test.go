package meters

import (
	"strconv"
	"testing"
)

// FuzzParseQueryID: CloudWatch echoes the query Ids; an Id maps back to a
// load balancer only when it is exactly one Portico asked for.
func FuzzParseQueryID(f *testing.F) {
	for _, s := range []string{"l0", "b12", "l01", "x1", "l-1", "l", ""} {
		f.Add(s, 20)
	}
	f.Fuzz(func(t *testing.T, id string, n int) {
		i, q, ok := parseQueryID(id, n)
		if !ok {
			return
		}
		if i < 0 || i >= n || q == "" || id != string(id[0])+strconv.Itoa(i) {
			t.Fatalf("parseQueryID(%q, %d) = %d, %q", id, n, i, q)
		}
	})
}
