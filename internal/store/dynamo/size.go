package dynamo

import (
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// MaxItemSize is DynamoDB's limit on the size of one item, as computed by
// [ItemSize]: 400 KB.
const MaxItemSize = 400 * 1024

// ItemSize returns the size of an item as DynamoDB counts it against the
// 400 KB item limit and in capacity units: the sum over attributes of the
// UTF-8 length of the name plus the size of the value, where
//
//   - a string is its UTF-8 length;
//   - a number is 1 byte per two significant digits, plus 1 (leading and
//     trailing zeros do not count);
//   - a binary value is its length in bytes;
//   - a null or boolean is 1 byte;
//   - a list or map is 3 bytes, plus for each element 1 byte and its size
//     (and, in a map, the length of its key);
//   - a set is the sum of its elements' sizes.
//
// DynamoDB documents the number rule as approximate; the others are exact.
func ItemSize(item map[string]types.AttributeValue) int {
	n := 0
	for name, v := range item {
		n += len(name) + valueSize(v)
	}
	return n
}

// valueSize returns the size of one attribute value (see ItemSize).
func valueSize(v types.AttributeValue) int {
	switch x := v.(type) {
	case *types.AttributeValueMemberS:
		return len(x.Value)
	case *types.AttributeValueMemberN:
		return numberSize(x.Value)
	case *types.AttributeValueMemberB:
		return len(x.Value)
	case *types.AttributeValueMemberBOOL, *types.AttributeValueMemberNULL:
		return 1
	case *types.AttributeValueMemberL:
		n := 3
		for _, e := range x.Value {
			n += 1 + valueSize(e)
		}
		return n
	case *types.AttributeValueMemberM:
		n := 3
		for k, e := range x.Value {
			n += 1 + len(k) + valueSize(e)
		}
		return n
	case *types.AttributeValueMemberSS:
		n := 0
		for _, e := range x.Value {
			n += len(e)
		}
		return n
	case *types.AttributeValueMemberNS:
		n := 0
		for _, e := range x.Value {
			n += numberSize(e)
		}
		return n
	case *types.AttributeValueMemberBS:
		n := 0
		for _, e := range x.Value {
			n += len(e)
		}
		return n
	}
	return 0
}

// numberSize returns the size of a number given as text: 1 byte per two
// significant digits, rounded up, plus 1.
func numberSize(s string) int {
	return (significantDigits(s)+1)/2 + 1
}

// significantDigits counts the digits of a decimal number, written plainly
// or with an exponent, without its leading and trailing zeros.
func significantDigits(s string) int {
	s = strings.TrimLeft(s, "+-")
	if i := strings.IndexAny(s, "eE"); i >= 0 {
		s = s[:i]
	}
	s = strings.Replace(s, ".", "", 1)
	s = strings.Trim(s, "0")
	return len(s)
}
