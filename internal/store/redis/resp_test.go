package redis

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"testing"

	goredis "github.com/redis/go-redis/v9"

	"github.com/cairnfs/cairn/internal/testserver"
)

// How appendFlat fails on a case of flatCases.
const (
	flatOK     = iota
	flatServer // an error reply of the server: a *replyError with server set
	flatShape  // a shape a read does not expect: a *replyError without server
	flatShort  // a reply cut short: errShortReply
)

// flatCases are raw replies and what appendFlat makes of them; in want, a
// nil element is a null and []byte{} an empty string.
var flatCases = []struct {
	name string
	raw  string
	want [][]byte
	fail int
	text string // the text of a server's error reply
}{
	{name: "RESP2 array", raw: "*3\r\n$1\r\na\r\n$-1\r\n$3\r\nb\rc\r\n", want: [][]byte{[]byte("a"), nil, []byte("b\rc")}},
	{name: "RESP2 nulls only", raw: "*2\r\n$-1\r\n$-1\r\n", want: [][]byte{nil, nil}},
	{name: "CRLF and binary in a bulk string", raw: "*2\r\n$4\r\na\r\nb\r\n$3\r\n\x00\xff\n\r\n", want: [][]byte{[]byte("a\r\nb"), []byte("\x00\xff\n")}},
	{name: "RESP3 nulls", raw: "*3\r\n_\r\n$2\r\nxy\r\n_\r\n", want: [][]byte{nil, []byte("xy"), nil}},
	{name: "RESP3 map", raw: "%2\r\n$1\r\n0\r\n$3\r\ngen\r\n$1\r\n1\r\n$0\r\n\r\n", want: [][]byte{[]byte("0"), []byte("gen"), []byte("1"), {}}},
	{name: "RESP3 map with a null", raw: "%1\r\n$1\r\nk\r\n_\r\n", want: [][]byte{[]byte("k"), nil}},
	{name: "empty array", raw: "*0\r\n", want: [][]byte{}},
	{name: "empty map", raw: "%0\r\n", want: [][]byte{}},
	{name: "empty bulk string", raw: "*3\r\n$0\r\n\r\n$-1\r\n_\r\n", want: [][]byte{{}, nil, nil}},
	{name: "leading zeros in lengths", raw: "*02\r\n$01\r\na\r\n$00\r\n\r\n", want: [][]byte{[]byte("a"), {}}},

	{name: "WRONGTYPE", raw: "-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
		fail: flatServer, text: "WRONGTYPE Operation against a key holding the wrong kind of value"},
	{name: "NOPERM", raw: "-NOPERM this user has no permissions to access one of the keys used as arguments\r\n",
		fail: flatServer, text: "NOPERM this user has no permissions to access one of the keys used as arguments"},
	{name: "RESP3 blob error", raw: "!21\r\nSYNTAX invalid syntax\r\n", fail: flatServer, text: "SYNTAX invalid syntax"},

	{name: "integer", raw: ":1\r\n", fail: flatShape},
	{name: "status", raw: "+OK\r\n", fail: flatShape},
	{name: "bulk string alone", raw: "$1\r\na\r\n", fail: flatShape},
	{name: "null bulk string alone", raw: "$-1\r\n", fail: flatShape},
	{name: "RESP3 null alone", raw: "_\r\n", fail: flatShape},
	{name: "null array", raw: "*-1\r\n", fail: flatShape},
	{name: "null map", raw: "%-1\r\n", fail: flatShape},
	{name: "set", raw: "~1\r\n$1\r\na\r\n", fail: flatShape},
	{name: "nested array", raw: "*1\r\n*0\r\n", fail: flatShape},
	{name: "nested map", raw: "*2\r\n$1\r\na\r\n%0\r\n", fail: flatShape},
	{name: "integer element", raw: "*1\r\n:1\r\n", fail: flatShape},
	{name: "status element", raw: "*1\r\n+OK\r\n", fail: flatShape},
	{name: "error element", raw: "*1\r\n-ERR x\r\n", fail: flatShape},
	{name: "RESP3 null with text", raw: "*1\r\n_x\r\n", fail: flatShape},
	{name: "bad array length", raw: "*x\r\n", fail: flatShape},
	{name: "negative array length", raw: "*-2\r\n", fail: flatShape},
	{name: "signed array length", raw: "*+1\r\n$1\r\na\r\n", fail: flatShape},
	{name: "huge array length", raw: "*99999999999\r\n", fail: flatShape},
	{name: "bad bulk length", raw: "*1\r\n$1x\r\na\r\n", fail: flatShape},
	{name: "negative bulk length", raw: "*1\r\n$-2\r\n", fail: flatShape},
	{name: "null bulk string with more", raw: "*1\r\n$-10\r\n", fail: flatShape},
	{name: "more elements than the data holds", raw: "*5\r\n$1\r\na\r\n", fail: flatShape},
	{name: "bulk string longer than the data", raw: "*1\r\n$5\r\nab\r\n", fail: flatShort},
	{name: "element missing", raw: "*2\r\n$1\r\na\r\n$1\r\nb", fail: flatShort},
	{name: "map value missing", raw: "%1\r\n$1\r\na\r\n", fail: flatShort},
	{name: "bytes after the reply", raw: "*1\r\n$1\r\na\r\nx", fail: flatShape},
	{name: "two replies", raw: "*0\r\n*0\r\n", fail: flatShape},
	{name: "bulk string longer than its length", raw: "*1\r\n$1\r\nab\r\n", fail: flatShape},
	// Failures after elements were appended.
	{name: "integer after an element", raw: "*2\r\n$1\r\na\r\n:1\r\n", fail: flatShape},
	{name: "RESP3 null with text after an element", raw: "*2\r\n$1\r\na\r\n_x\r\n", fail: flatShape},
	{name: "negative bulk length after an element", raw: "*2\r\n_\r\n$-2\r\n", fail: flatShape},
	{name: "bulk string longer than its length after an element", raw: "*2\r\n$1\r\na\r\n$1\r\nbc\r\n", fail: flatShape},
	{name: "bulk string longer than the data after an element", raw: "*2\r\n$1\r\na\r\n$3\r\nbc\r\n", fail: flatShort},
	{name: "empty line after an element", raw: "*2\r\n$1\r\na\r\n\r\n\r\n", fail: flatShort},
	{name: "bytes after a map", raw: "%1\r\n$1\r\na\r\n$1\r\nb\r\n\r\n", fail: flatShape},
	{name: "missing CRLF after a bulk string", raw: "*1\r\n$1\r\na", fail: flatShort},
	{name: "CR only after a bulk string", raw: "*1\r\n$1\r\na\r", fail: flatShort},
	{name: "LF only after the header", raw: "*1\n$1\r\na\r\n", fail: flatShort},
	{name: "LF only after an element header", raw: "*1\r\n$1\na\r\n", fail: flatShort},
	{name: "empty element line", raw: "*1\r\n\r\n\r\n", fail: flatShort},
	{name: "no CRLF", raw: "*1", fail: flatShort},
	{name: "empty", raw: "", fail: flatShort},
	{name: "CRLF only", raw: "\r\n", fail: flatShort},
}

func TestAppendFlat(t *testing.T) {
	for _, tc := range flatCases {
		t.Run(tc.name, func(t *testing.T) {
			// dst has room to spare, so that elements appended before a
			// failure land in its array: they must not show.
			dst := make([][]byte, 1, 16)
			dst[0] = []byte("before")
			got, err := appendFlat(dst, []byte(tc.raw))
			if len(got) < 1 || string(got[0]) != "before" {
				t.Fatalf("appendFlat(%q) changed the elements before: %q", tc.raw, got)
			}
			if tc.fail != flatOK {
				if err == nil {
					t.Fatalf("appendFlat(%q) = %q, want an error", tc.raw, got[1:])
				}
				if len(got) != 1 {
					t.Errorf("appendFlat(%q) failed (%v) but returned %d elements, want dst as it was", tc.raw, err, len(got))
				}
				checkFlatError(t, tc.raw, err, tc.fail, tc.text)
				return
			}
			if err != nil {
				t.Fatalf("appendFlat(%q): %v", tc.raw, err)
			}
			if !sameElems(got[1:], tc.want) {
				t.Errorf("appendFlat(%q) = %s, want %s", tc.raw, showElems(got[1:]), showElems(tc.want))
			}
		})
	}
}

func checkFlatError(t *testing.T, raw string, err error, fail int, text string) {
	t.Helper()
	if fail == flatShort {
		if !errors.Is(err, errShortReply) {
			t.Errorf("appendFlat(%q): %v, want errShortReply", raw, err)
		}
		return
	}
	var re *replyError
	if !errors.As(err, &re) {
		t.Fatalf("appendFlat(%q): %T %v, want a *replyError", raw, err, err)
	}
	if re.server != (fail == flatServer) {
		t.Errorf("appendFlat(%q): %v with server %v, want %v", raw, err, re.server, fail == flatServer)
	}
	if fail == flatServer && re.text != text {
		t.Errorf("appendFlat(%q): error text %q, want %q", raw, re.text, text)
	}
	wrongType := fail == flatServer && bytes.HasPrefix([]byte(text), []byte("WRONGTYPE "))
	if re.hasPrefix(codeWrongType) != wrongType {
		t.Errorf("appendFlat(%q): hasPrefix(%q) = %v, want %v", raw, codeWrongType, !wrongType, wrongType)
	}
	if re.hasPrefix("WRONG") {
		t.Errorf("appendFlat(%q): hasPrefix(\"WRONG\") = true, want false: not a whole code", raw)
	}
	if !re.server && re.hasPrefix("redis:") {
		t.Errorf("appendFlat(%q): an unexpected shape passes for an error reply of the server", raw)
	}
}

// sameElems reports whether a and b hold the same elements, telling nil
// (a null) from an empty string.
func sameElems(a, b [][]byte) bool {
	return slices.EqualFunc(a, b, func(x, y []byte) bool { return (x == nil) == (y == nil) && bytes.Equal(x, y) })
}

func showElems(es [][]byte) string {
	var b bytes.Buffer
	b.WriteByte('[')
	for i, e := range es {
		if i > 0 {
			b.WriteByte(' ')
		}
		if e == nil {
			b.WriteString("nil")
		} else {
			fmt.Fprintf(&b, "%q", e)
		}
	}
	b.WriteByte(']')
	return b.String()
}

// TestAppendFlatRealReplies checks appendFlat on the replies of a real
// server, in RESP2 and RESP3, against what go-redis parses of the same
// commands.
func TestAppendFlatRealReplies(t *testing.T) {
	addr := testserver.Redis(t)
	prefix := uniquePrefix(t)
	ctx := context.Background()
	hash, missing, str := prefix+"{h}", prefix+"{missing}", prefix+"{string}"
	setup := rawClient(t)
	// Values an ad hoc parser could trip on: empty, CRLF inside, a RESP
	// null's text, binary.
	fields := map[string]string{
		"0":    "gen",
		"1":    "",
		"2":    "a\r\nb",
		"3":    "$-1\r\n",
		"4":    "\x00\xff",
		"long": string(bytes.Repeat([]byte("x"), 1000)),
	}
	if err := setup.HSet(ctx, hash, fields).Err(); err != nil {
		t.Fatal(err)
	}
	if err := setup.Set(ctx, str, "x", 0).Err(); err != nil {
		t.Fatal(err)
	}
	commands := [][]any{
		{"hmget", hash, "0", "1", "absent", "2", "3", "4", "long", "also absent"},
		{"hmget", hash, "absent"},
		{"hgetall", hash},
		{"hmget", missing, "0", "1"},
		{"hgetall", missing},
	}
	for _, protocol := range []int{2, 3} {
		t.Run("RESP"+strconv.Itoa(protocol), func(t *testing.T) {
			c := goredis.NewClient(&goredis.Options{Addr: addr, Protocol: protocol})
			defer c.Close()
			for _, args := range commands {
				raw := goredis.NewRawCmd(ctx, args...)
				parsed := goredis.NewCmd(ctx, args...)
				if err := c.Process(ctx, raw); err != nil {
					t.Fatalf("%v: %v", args, err)
				}
				if err := c.Process(ctx, parsed); err != nil {
					t.Fatalf("%v: %v", args, err)
				}
				got, err := appendFlat(nil, raw.Val())
				if err != nil {
					t.Fatalf("%v: appendFlat(%q): %v", args, raw.Val(), err)
				}
				want, err := appendParsed(nil, parsed.Val())
				if err != nil {
					t.Fatalf("%v: go-redis parsed %#v: %v", args, parsed.Val(), err)
				}
				if args[0] == "hgetall" {
					// Compared as sets of pairs: go-redis parses a RESP3
					// map into a Go map, whose order is random.
					if _, isMap := parsed.Val().(map[any]any); isMap != (protocol == 3) || (raw.Val()[0] == '%') != (protocol == 3) {
						t.Errorf("%v in RESP%d: %q, parsed as %T; want a map in RESP3 only", args, protocol, raw.Val(), parsed.Val())
					}
					if got, err = sortPairs(got); err != nil {
						t.Fatalf("%v: appendFlat(%q): %v", args, raw.Val(), err)
					}
					if want, err = sortPairs(want); err != nil {
						t.Fatalf("%v: go-redis parsed %#v: %v", args, parsed.Val(), err)
					}
				}
				if !sameElems(got, want) {
					t.Errorf("%v: appendFlat(%q) = %s, go-redis parsed %s", args, raw.Val(), showElems(got), showElems(want))
				}
			}
			if protocol == 3 {
				// The absent fields must have come as RESP3 nulls.
				raw := goredis.NewRawCmd(ctx, "hmget", hash, "absent")
				if err := c.Process(ctx, raw); err != nil || string(raw.Val()) != "*1\r\n_\r\n" {
					t.Errorf("HMGET of an absent field in RESP3: %q, %v; want a RESP3 null", raw.Val(), err)
				}
			}

			for _, args := range [][]any{{"hmget", str, "0", "1"}, {"hgetall", str}} {
				raw := goredis.NewRawCmd(ctx, args...)
				parsed := goredis.NewCmd(ctx, args...)
				if err := c.Process(ctx, raw); err != nil {
					t.Fatalf("%v: a raw command failed on an error reply: %v", args, err)
				}
				_ = c.Process(ctx, parsed)
				if !goredis.HasErrorPrefix(parsed.Err(), codeWrongType) {
					t.Fatalf("%v: go-redis: %v, want WRONGTYPE", args, parsed.Err())
				}
				dst := [][]byte{[]byte("before")}
				got, err := appendFlat(dst, raw.Val())
				var re *replyError
				if !errors.As(err, &re) || !re.server || !re.hasPrefix(codeWrongType) {
					t.Fatalf("%v: appendFlat(%q): %v, want a WRONGTYPE error reply", args, raw.Val(), err)
				}
				if re.text != parsed.Err().Error() {
					t.Errorf("%v: error text %q, go-redis's %q", args, re.text, parsed.Err().Error())
				}
				if len(got) != 1 || string(got[0]) != "before" {
					t.Errorf("%v: appendFlat changed dst on an error reply: %q", args, got)
				}
			}
		})
	}
}

// sortPairs sorts the key-value pairs of es, keys and values alternating,
// by key; keys must be distinct.
func sortPairs(es [][]byte) ([][]byte, error) {
	if len(es)%2 != 0 {
		return nil, fmt.Errorf("%d elements, not pairs", len(es))
	}
	pairs := make([][2][]byte, 0, len(es)/2)
	for i := 0; i < len(es); i += 2 {
		pairs = append(pairs, [2][]byte{es[i], es[i+1]})
	}
	slices.SortFunc(pairs, func(a, b [2][]byte) int { return bytes.Compare(a[0], b[0]) })
	out := make([][]byte, 0, len(es))
	for i, p := range pairs {
		if i > 0 && bytes.Equal(p[0], pairs[i-1][0]) {
			return nil, fmt.Errorf("key %q twice", p[0])
		}
		out = append(out, p[0], p[1])
	}
	return out, nil
}

// encodeRESP2 encodes es as a RESP2 array of bulk strings, nil as a null.
func encodeRESP2(es [][]byte) []byte {
	b := fmt.Appendf(nil, "*%d\r\n", len(es))
	for _, e := range es {
		if e == nil {
			b = append(b, "$-1\r\n"...)
			continue
		}
		b = fmt.Appendf(b, "$%d\r\n", len(e))
		b = append(b, e...)
		b = append(b, "\r\n"...)
	}
	return b
}

// FuzzAppendFlat checks that appendFlat never panics, leaves dst alone when
// it fails, and otherwise gives elements that are exactly the reply's bulk
// strings and nulls.
func FuzzAppendFlat(f *testing.F) {
	for _, tc := range flatCases {
		f.Add([]byte(tc.raw))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		dst := make([][]byte, 1, 8)
		dst[0] = []byte("before")
		got, err := appendFlat(dst, raw)
		if len(got) < 1 || string(got[0]) != "before" {
			t.Fatalf("appendFlat(%q) changed the elements before: %q", raw, got)
		}
		if err != nil {
			var re *replyError
			if !errors.As(err, &re) && !errors.Is(err, errShortReply) {
				t.Fatalf("appendFlat(%q): %T %v, want a *replyError or errShortReply", raw, err, err)
			}
			if len(got) != 1 {
				t.Fatalf("appendFlat(%q) failed (%v) but returned %d elements", raw, err, len(got))
			}
			return
		}
		es := got[1:]
		if raw[0] != '*' && raw[0] != '%' {
			t.Fatalf("appendFlat(%q) = %s: accepted a reply that is neither an array nor a map", raw, showElems(es))
		}
		canonical := checkElemsInReply(t, raw, es)

		enc := encodeRESP2(es)
		again, err := appendFlat(nil, enc)
		if err != nil {
			t.Fatalf("appendFlat(%q), the re-encoding of %q: %v", enc, raw, err)
		}
		if !sameElems(again, es) {
			t.Fatalf("appendFlat(%q) = %s; re-encoded as %q, parsed again: %s", raw, showElems(es), enc, showElems(again))
		}
		if raw[0] == '*' && canonical && !bytes.Equal(enc, raw) {
			t.Fatalf("appendFlat(%q) = %s, re-encoded as %q: a RESP2 array in canonical form must give itself back", raw, showElems(es), enc)
		}
	})
}

// checkElemsInReply walks raw, which appendFlat parsed into es, and fails
// t unless each element is what raw holds at its place: for a null, "$-1"
// or "_"; for a bulk string, its length and then its bytes. It reports
// whether raw is a RESP2 aggregate in canonical form: lengths without
// leading zeros, nulls as "$-1".
func checkElemsInReply(t *testing.T, raw []byte, es [][]byte) bool {
	t.Helper()
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("appendFlat(%q) = %s: %s", raw, showElems(es), fmt.Sprintf(format, args...))
	}
	line := func(b []byte) ([]byte, []byte) {
		i := bytes.Index(b, []byte("\r\n"))
		if i < 0 {
			fail("no CRLF in %q", b)
		}
		return b[:i], b[i+2:]
	}
	head, rest := line(raw)
	n := len(es)
	if raw[0] == '%' {
		if n%2 != 0 {
			fail("a map gave an odd number of elements")
		}
		n /= 2
	}
	canonical := string(head[1:]) == strconv.Itoa(n)
	if c, err := strconv.Atoi(string(head[1:])); err != nil || c != n {
		fail("the reply counts %q elements", head[1:])
	}
	for i, e := range es {
		var l []byte
		l, rest = line(rest)
		switch {
		case string(l) == "_":
			canonical = false
			if e != nil {
				fail("element %d is a RESP3 null, parsed as %q", i, e)
			}
		case string(l) == "$-1":
			if e != nil {
				fail("element %d is a null, parsed as %q", i, e)
			}
		case len(l) > 1 && l[0] == '$':
			if e == nil {
				fail("element %d is a bulk string, parsed as a null", i)
			}
			if c, err := strconv.Atoi(string(l[1:])); err != nil || c != len(e) || len(rest) < len(e)+2 {
				fail("element %d has length %q, parsed as %d bytes", i, l[1:], len(e))
			}
			if string(l[1:]) != strconv.Itoa(len(e)) {
				canonical = false
			}
			if !bytes.Equal(rest[:len(e)], e) || string(rest[len(e):len(e)+2]) != "\r\n" {
				fail("element %d is %q in the reply", i, rest[:len(e)+2])
			}
			rest = rest[len(e)+2:]
		default:
			fail("element %d starts with %q", i, l)
		}
	}
	if len(rest) != 0 {
		fail("%d bytes after the elements", len(rest))
	}
	return canonical
}
