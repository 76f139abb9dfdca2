package dynamo

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// The cases follow the rules of DynamoDB's "Item sizes and formats" page,
// one rule at a time.
func TestItemSize(t *testing.T) {
	s := func(v string) types.AttributeValue { return &types.AttributeValueMemberS{Value: v} }
	n := func(v string) types.AttributeValue { return &types.AttributeValueMemberN{Value: v} }
	tests := []struct {
		name string
		item map[string]types.AttributeValue
		want int
	}{
		{"empty item", map[string]types.AttributeValue{}, 0},
		// Strings: name bytes + UTF-8 bytes.
		{"string", map[string]types.AttributeValue{"Name": s("Ada")}, 4 + 3},
		{"utf-8 string", map[string]types.AttributeValue{"é": s("世界")}, 2 + 6},
		{"empty string", map[string]types.AttributeValue{"s": s("")}, 1},
		// Numbers: name + 1 byte per two significant digits + 1.
		{"one digit", map[string]types.AttributeValue{"n": n("7")}, 1 + 1 + 1},
		{"three digits", map[string]types.AttributeValue{"n": n("123")}, 1 + 2 + 1},
		{"leading and trailing zeros", map[string]types.AttributeValue{"n": n("000120.500")}, 1 + 2 + 1},
		{"inner zeros count", map[string]types.AttributeValue{"n": n("1001")}, 1 + 2 + 1},
		{"negative", map[string]types.AttributeValue{"n": n("-98765")}, 1 + 3 + 1},
		{"exponent", map[string]types.AttributeValue{"n": n("1.5E+10")}, 1 + 1 + 1},
		{"38 digits", map[string]types.AttributeValue{"n": n("12345678901234567890123456789012345678")}, 1 + 19 + 1},
		{"zero", map[string]types.AttributeValue{"n": n("0")}, 1 + 0 + 1},
		// Binary: name + raw bytes.
		{"binary", map[string]types.AttributeValue{"b": &types.AttributeValueMemberB{Value: make([]byte, 32)}}, 1 + 32},
		// Null and boolean: name + 1.
		{"null", map[string]types.AttributeValue{"nul": &types.AttributeValueMemberNULL{Value: true}}, 3 + 1},
		{"bool", map[string]types.AttributeValue{"ok": &types.AttributeValueMemberBOOL{Value: false}}, 2 + 1},
		// Lists and maps: name + 3 + per element (1 + size), map keys count.
		{"empty list", map[string]types.AttributeValue{"l": &types.AttributeValueMemberL{}}, 1 + 3},
		{"empty map", map[string]types.AttributeValue{"m": &types.AttributeValueMemberM{}}, 1 + 3},
		{"list", map[string]types.AttributeValue{"l": &types.AttributeValueMemberL{Value: []types.AttributeValue{s("ab"), n("12")}}},
			1 + 3 + (1 + 2) + (1 + 2)},
		{"map", map[string]types.AttributeValue{"m": &types.AttributeValueMemberM{Value: map[string]types.AttributeValue{
			"key": s("v"), "t": &types.AttributeValueMemberBOOL{Value: true}}}},
			1 + 3 + (1 + 3 + 1) + (1 + 1 + 1)},
		{"nested", map[string]types.AttributeValue{"l": &types.AttributeValueMemberL{Value: []types.AttributeValue{
			&types.AttributeValueMemberL{Value: []types.AttributeValue{s("x")}}}}},
			1 + 3 + 1 + (3 + 1 + 1)},
		// Sets: the sum of the elements.
		{"string set", map[string]types.AttributeValue{"ss": &types.AttributeValueMemberSS{Value: []string{"a", "bc"}}}, 2 + 3},
		{"number set", map[string]types.AttributeValue{"ns": &types.AttributeValueMemberNS{Value: []string{"1", "22"}}}, 2 + 2 + 2},
		{"binary set", map[string]types.AttributeValue{"bs": &types.AttributeValueMemberBS{Value: [][]byte{{1}, {2, 3}}}}, 2 + 3},
		// An entity item as cairn writes it.
		{"entity", map[string]types.AttributeValue{
			"pk": s("user#u1"), "sk": s("e"),
			"1": n("31"), "1@": n("1714979289123456"),
		}, (2 + 7) + (2 + 1) + (1 + 1 + 1) + (2 + 8 + 1)},
	}
	for _, tc := range tests {
		if got := ItemSize(tc.item); got != tc.want {
			t.Errorf("%s: ItemSize = %d, want %d", tc.name, got, tc.want)
		}
	}
}
