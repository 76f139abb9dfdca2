package gtreplicator

import (
	"encoding/base64"
	"slices"
	"strconv"
	"strings"

	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	st "github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"
)

// convertItem turns an item of a stream record into the DynamoDB API's
// type, for PutItem and DeleteItem.
func convertItem(m map[string]st.AttributeValue) map[string]ddb.AttributeValue {
	if m == nil {
		return nil
	}
	out := make(map[string]ddb.AttributeValue, len(m))
	for k, v := range m {
		out[k] = convert(v)
	}
	return out
}

func convert(v st.AttributeValue) ddb.AttributeValue {
	switch v := v.(type) {
	case *st.AttributeValueMemberS:
		return &ddb.AttributeValueMemberS{Value: v.Value}
	case *st.AttributeValueMemberN:
		return &ddb.AttributeValueMemberN{Value: v.Value}
	case *st.AttributeValueMemberB:
		return &ddb.AttributeValueMemberB{Value: v.Value}
	case *st.AttributeValueMemberBOOL:
		return &ddb.AttributeValueMemberBOOL{Value: v.Value}
	case *st.AttributeValueMemberNULL:
		return &ddb.AttributeValueMemberNULL{Value: v.Value}
	case *st.AttributeValueMemberSS:
		return &ddb.AttributeValueMemberSS{Value: v.Value}
	case *st.AttributeValueMemberNS:
		return &ddb.AttributeValueMemberNS{Value: v.Value}
	case *st.AttributeValueMemberBS:
		return &ddb.AttributeValueMemberBS{Value: v.Value}
	case *st.AttributeValueMemberL:
		l := make([]ddb.AttributeValue, len(v.Value))
		for i, e := range v.Value {
			l[i] = convert(e)
		}
		return &ddb.AttributeValueMemberL{Value: l}
	case *st.AttributeValueMemberM:
		return &ddb.AttributeValueMemberM{Value: convertItem(v.Value)}
	}
	return &ddb.AttributeValueMemberNULL{Value: true}
}

// canonical returns a string that two items share exactly when they hold
// the same attributes with the same values: map keys and set members are
// sorted, so the order the SDK decoded them in does not matter. A nil item
// (absent, deleted) gives "-". Numbers are compared as sent, which is how
// a stream record repeats the number the write carried.
func canonical(item map[string]ddb.AttributeValue) string {
	if item == nil {
		return "-"
	}
	var b strings.Builder
	writeMap(&b, item)
	return b.String()
}

func writeMap(b *strings.Builder, m map[string]ddb.AttributeValue) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b.WriteByte('{')
	for _, k := range keys {
		b.WriteString(strconv.Quote(k))
		b.WriteByte(':')
		writeValue(b, m[k])
		b.WriteByte(',')
	}
	b.WriteByte('}')
}

func writeSet(b *strings.Builder, tag string, members []string) {
	s := slices.Clone(members)
	slices.Sort(s)
	b.WriteString(tag)
	b.WriteByte('[')
	for _, m := range s {
		b.WriteString(strconv.Quote(m))
		b.WriteByte(',')
	}
	b.WriteByte(']')
}

func writeValue(b *strings.Builder, v ddb.AttributeValue) {
	switch v := v.(type) {
	case *ddb.AttributeValueMemberS:
		b.WriteString("S" + strconv.Quote(v.Value))
	case *ddb.AttributeValueMemberN:
		b.WriteString("N" + strconv.Quote(v.Value))
	case *ddb.AttributeValueMemberB:
		b.WriteString("B" + strconv.Quote(base64.StdEncoding.EncodeToString(v.Value)))
	case *ddb.AttributeValueMemberBOOL:
		b.WriteString("BOOL" + strconv.FormatBool(v.Value))
	case *ddb.AttributeValueMemberNULL:
		b.WriteString("NULL")
	case *ddb.AttributeValueMemberSS:
		writeSet(b, "SS", v.Value)
	case *ddb.AttributeValueMemberNS:
		writeSet(b, "NS", v.Value)
	case *ddb.AttributeValueMemberBS:
		s := make([]string, len(v.Value))
		for i, e := range v.Value {
			s[i] = base64.StdEncoding.EncodeToString(e)
		}
		writeSet(b, "BS", s)
	case *ddb.AttributeValueMemberL:
		b.WriteString("L[")
		for _, e := range v.Value {
			writeValue(b, e)
			b.WriteByte(',')
		}
		b.WriteByte(']')
	case *ddb.AttributeValueMemberM:
		b.WriteByte('M')
		writeMap(b, v.Value)
	default:
		b.WriteString("?")
	}
}
