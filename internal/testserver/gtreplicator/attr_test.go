package gtreplicator

import (
	"testing"

	ddb "github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
	st "github.com/aws/aws-sdk-go-v2/service/dynamodbstreams/types"
)

// Two stream images are taken for the same item exactly when their
// values are equal, whatever order their sets were decoded in: the echo
// check and the item keys rest on it.
func FuzzCanonical(f *testing.F) {
	f.Add("a", "b", []byte{1})
	f.Add("a\",", "", []byte(nil))
	f.Add("x", "x", []byte{})
	f.Fuzz(func(t *testing.T, s1, s2 string, raw []byte) {
		img := func(a, b string) map[string]ddb.AttributeValue {
			return convertItem(map[string]st.AttributeValue{
				"s":  &st.AttributeValueMemberS{Value: a},
				"ss": &st.AttributeValueMemberSS{Value: []string{a, b}},
				"m": &st.AttributeValueMemberM{Value: map[string]st.AttributeValue{
					a: &st.AttributeValueMemberB{Value: raw},
					"l": &st.AttributeValueMemberL{Value: []st.AttributeValue{
						&st.AttributeValueMemberN{Value: b}, &st.AttributeValueMemberBOOL{Value: true}}},
				}},
			})
		}
		if canonical(img(s1, s2)) != canonical(img(s1, s2)) {
			t.Fatal("one image, two canonical forms")
		}
		swapped := img(s1, s2)
		swapped["ss"] = &ddb.AttributeValueMemberSS{Value: []string{s2, s1}}
		if canonical(img(s1, s2)) != canonical(swapped) {
			t.Errorf("set order changes the canonical form of %q, %q", s1, s2)
		}
		if s1 != s2 && canonical(img(s1, s1)) == canonical(img(s2, s1)) {
			t.Errorf("images with %q and %q share a canonical form", s1, s2)
		}
		if canonical(nil) == canonical(map[string]ddb.AttributeValue{}) {
			t.Error("an absent item and an empty one share a canonical form")
		}
	})
}
