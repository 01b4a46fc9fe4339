package plugin

import (
	"strings"
	"testing"
)

func TestBrief(t *testing.T) {
	long := strings.Repeat("x", 1000)
	tests := []struct {
		name, in, want string
	}{
		{"short message unchanged", `lb.portico.dev/scheme: want "external" or "internal" (got "dmz")`,
			`lb.portico.dev/scheme: want "external" or "internal" (got "dmz")`},
		{"long value shortened, reason after it kept", `lb.portico.dev/ip: "` + long + `" is not an IP address`,
			`lb.portico.dev/ip: "` + long[:64] + `... (1000 characters)" is not an IP address`},
		{"value cut off unterminated by an older operator", (`lb.portico.dev/ip "` + long + long)[:1021] + "...",
			`lb.portico.dev/ip "` + long[:64] + `... (1005 characters)`},
		{"escaped quotes stay inside the value", `key: "a\"` + long + `" bad`,
			`key: "a\"` + long[:61] + `... (1003 characters)" bad`},
		{"multi-byte characters are not split", `key: "` + strings.Repeat("é", 40) + `" bad`,
			`key: "` + strings.Repeat("é", 32) + `... (80 characters)" bad`},
		{"newlines folded", "first line\n  second line", "first line second line"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := brief(tt.in); got != tt.want {
				t.Errorf("brief:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
	if got := brief(strings.Repeat("word ", 200)); len(got) > maxMessage+3 || !strings.HasSuffix(got, "...") {
		t.Errorf("a long message without a quoted value is cut at %d: %d characters", maxMessage, len(got))
	}
}
