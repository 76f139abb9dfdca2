package testserver

import (
	"sync/atomic"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// CommitRefusal makes an in-process kfake cluster refuse offset commits,
// as a broker does when a consumer group's coordinator is unavailable or
// access is denied: the fault at the network seam of a crash between a
// write and its commit.
type CommitRefusal struct {
	on      atomic.Bool
	refused atomic.Int64
}

// RefuseCommits installs a refusal on c, answering every OffsetCommit with
// err while it is on (it starts on).
func RefuseCommits(c *kfake.Cluster, err *kerr.Error) *CommitRefusal {
	cr := &CommitRefusal{}
	cr.on.Store(true)
	c.ControlKey(int16(kmsg.OffsetCommit), func(req kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		if !cr.on.Load() {
			return nil, nil, false
		}
		cr.refused.Add(1)
		r := req.(*kmsg.OffsetCommitRequest)
		resp := r.ResponseKind().(*kmsg.OffsetCommitResponse)
		for _, rt := range r.Topics {
			st := kmsg.NewOffsetCommitResponseTopic()
			st.Topic = rt.Topic
			for _, rp := range rt.Partitions {
				sp := kmsg.NewOffsetCommitResponseTopicPartition()
				sp.Partition = rp.Partition
				sp.ErrorCode = err.Code
				st.Partitions = append(st.Partitions, sp)
			}
			resp.Topics = append(resp.Topics, st)
		}
		return resp, nil, true
	})
	return cr
}

// Allow lets commits through again.
func (cr *CommitRefusal) Allow() { cr.on.Store(false) }

// Refused counts the commits refused so far.
func (cr *CommitRefusal) Refused() int64 { return cr.refused.Load() }
