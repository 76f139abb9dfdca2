package dynamo

import (
	"encoding/binary"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/dynamodb/types"
)

// An observed-at is stored as binary (B): 7 bytes, big-endian, of its
// microseconds since the Unix epoch plus 2^55. DynamoDB compares binary
// values as unsigned bytes, so byte order is time order and the newest-wins
// condition compares stored and written observed-ats directly. 7 bytes
// cover 2^55 microseconds either side of 1970 (the years 829 to 3111;
// the API accepts observed-ats from 1000 to 2999) where a 16-digit number
// takes 9 bytes: 80 bytes less per item of 40 features.
const observedAtLen = 7

const (
	observedAtBias = 1 << 55
	// minObservedAt and maxObservedAt bound what 7 bytes hold.
	minObservedAt = -observedAtBias
	maxObservedAt = observedAtBias - 1
)

// observedAtInRange reports whether micros can be stored.
func observedAtInRange(micros int64) bool {
	return micros >= minObservedAt && micros <= maxObservedAt
}

// observedAtValue returns the attribute value of an observed-at, which
// must be in range.
func observedAtValue(micros int64) types.AttributeValue {
	return &types.AttributeValueMemberB{Value: observedAtBytes(micros)}
}

func observedAtBytes(micros int64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(micros+observedAtBias))
	return b[1:]
}

// observedAtMicros decodes a stored observed-at. It also reads the number
// form (N, decimal microseconds) in case an item was written by hand.
func observedAtMicros(av types.AttributeValue) (int64, bool) {
	switch v := av.(type) {
	case *types.AttributeValueMemberB:
		if len(v.Value) != observedAtLen {
			return 0, false
		}
		var b [8]byte
		copy(b[1:], v.Value)
		return int64(binary.BigEndian.Uint64(b[:])) - observedAtBias, true
	case *types.AttributeValueMemberN:
		t, ok := parseMicros(v.Value)
		return t.UnixMicro(), ok
	}
	return 0, false
}

// observedAt decodes a stored observed-at as a time.
func observedAt(av types.AttributeValue) (time.Time, bool) {
	micros, ok := observedAtMicros(av)
	if !ok {
		return time.Time{}, false
	}
	return time.UnixMicro(micros).UTC(), true
}
