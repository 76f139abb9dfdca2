package redis

import (
	"bytes"
	"errors"
	"fmt"
)

// A read takes its replies from go-redis as raw RESP (goredis.RawCmd):
// one buffer per entity instead of a string and an interface value per
// field. The replies it asks for are flat: an array (HMGET; HGETALL in
// RESP2) or a map (HGETALL in RESP3) of bulk strings and nulls. Anything
// else, an error reply included, is handed back as a replyError, and the
// read decides what to do with it.

// replyError is a reply that is not a flat aggregate of bulk strings: an
// error reply of the server (its text, such as "WRONGTYPE Operation against
// a key..."), or a shape a read does not expect.
type replyError struct {
	text string
	// server reports an error reply of the server, as opposed to an
	// unexpected shape.
	server bool
}

func (e *replyError) Error() string { return e.text }

// hasPrefix reports whether e is an error reply of the server starting
// with code, such as "WRONGTYPE".
func (e *replyError) hasPrefix(code string) bool {
	return e.server && len(e.text) > len(code) && e.text[:len(code)] == code && e.text[len(code)] == ' '
}

// errShortReply is a reply cut short, which go-redis never hands over.
var errShortReply = errors.New("redis: raw reply cut short")

// appendFlat parses raw, one whole RESP2 or RESP3 reply that must be an
// array or a map of bulk strings and nulls, and appends its elements to
// dst in order (a map's keys and values alternating). A null element is
// appended as nil, any other as a non-nil slice of raw, so that an empty
// string stays apart from a null. A reply of another shape, an error reply
// included, gives a *replyError, and one cut short errShortReply; dst is
// then returned as it was.
func appendFlat(dst [][]byte, raw []byte) ([][]byte, error) {
	start := len(dst)
	line, rest, ok := cutLine(raw)
	if !ok || len(line) == 0 {
		return dst, errShortReply
	}
	var n int
	switch line[0] {
	case '-', '!':
		// An error reply; '!' is RESP3's blob error, "!<len>\r\n<text>".
		text := line[1:]
		if line[0] == '!' {
			if body, _, ok := cutLine(rest); ok {
				text = body
			}
		}
		return dst, &replyError{text: string(text), server: true}
	case '*':
		n = parseLen(line[1:])
	case '%':
		if n = parseLen(line[1:]); n > 0 {
			n *= 2 // keys and values
		}
	default:
		return dst, unexpected(line)
	}
	// Every element takes at least 3 bytes ("_\r\n").
	if n < 0 || n > len(rest)/3 {
		return dst, unexpected(line)
	}
	for range n {
		// Most elements are bulk strings, "$<length>\r\n<bytes>\r\n",
		// read here in one pass; anything else takes the general way,
		// which accepts and rejects the same bulk strings.
		if len(rest) > 3 && rest[0] == '$' {
			j, l := 1, 0
			for ; j < len(rest) && j <= 10 && rest[j] >= '0' && rest[j] <= '9'; j++ {
				l = l*10 + int(rest[j]-'0')
			}
			if j > 1 && j+1 < len(rest) && rest[j] == '\r' && rest[j+1] == '\n' && l <= 1<<31 {
				body := rest[j+2:]
				if len(body) < l+2 {
					return dst[:start], errShortReply
				}
				if body[l] != '\r' || body[l+1] != '\n' {
					return dst[:start], unexpected(rest[:j])
				}
				dst = append(dst, body[:l:l])
				rest = body[l+2:]
				continue
			}
		}
		line, rest, ok = cutLine(rest)
		if !ok || len(line) == 0 {
			return dst[:start], errShortReply
		}
		switch line[0] {
		case '_':
			if len(line) != 1 {
				return dst[:start], unexpected(line)
			}
			dst = append(dst, nil)
		case '$':
			l := parseLen(line[1:])
			if l == -1 && len(line) == 3 { // "$-1": RESP2's null bulk string
				dst = append(dst, nil)
				continue
			}
			if l < 0 {
				return dst[:start], unexpected(line)
			}
			if len(rest) < l+2 {
				return dst[:start], errShortReply
			}
			if rest[l] != '\r' || rest[l+1] != '\n' {
				return dst[:start], unexpected(line)
			}
			dst = append(dst, rest[:l:l])
			rest = rest[l+2:]
		default:
			return dst[:start], unexpected(line)
		}
	}
	if len(rest) != 0 {
		return dst[:start], &replyError{text: fmt.Sprintf("redis: %d bytes after the reply", len(rest))}
	}
	return dst, nil
}

// cutLine splits b after its first CRLF, returning the line without it.
func cutLine(b []byte) (line, rest []byte, ok bool) {
	i := bytes.IndexByte(b, '\n')
	if i < 1 || b[i-1] != '\r' {
		return nil, b, false
	}
	return b[:i-1], b[i+1:], true
}

// parseLen parses a RESP length: decimal digits, or "-1". It returns -2
// for anything else, and for lengths over 2^31.
func parseLen(b []byte) int {
	if len(b) == 2 && b[0] == '-' && b[1] == '1' {
		return -1
	}
	if len(b) == 0 || len(b) > 10 {
		return -2
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return -2
		}
		n = n*10 + int(c-'0')
	}
	if n > 1<<31 {
		return -2
	}
	return n
}

func unexpected(line []byte) error {
	return &replyError{text: fmt.Sprintf("redis: unexpected reply %.40q", line)}
}
