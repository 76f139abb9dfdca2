package auth

import (
	"fmt"
	"strings"
	"testing"
)

// BenchmarkAuthenticate is the cost authentication adds to a request:
// parsing the header, hashing the token and comparing it with every key.
func BenchmarkAuthenticate(b *testing.B) {
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			var y strings.Builder
			y.WriteString("keys:\n")
			var token string
			for i := range n {
				tok, e, err := NewKey(fmt.Sprint("k", i), []Scope{Query})
				if err != nil {
					b.Fatal(err)
				}
				token = tok
				fmt.Fprintf(&y, "  - {name: %s, sha256: %s, scopes: [query]}\n", e.Name, e.SHA256)
			}
			s, err := Parse([]byte(y.String()))
			if err != nil {
				b.Fatal(err)
			}
			k := &Keys{}
			k.set.Store(s)
			header := []string{"Bearer " + token}
			for b.Loop() {
				if _, err := k.Authenticate(header); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
