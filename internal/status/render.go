package status

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Failed returns the names of the sections that could not be collected.
// The store being unreachable counts; lag and mismatched settings are
// findings, not failures.
func (r *Report) Failed() []string {
	var out []string
	for _, s := range []struct {
		name string
		err  string
	}{
		{"writer group", r.Group.Error},
		{"dead letters", r.DeadLetter.Error},
		{"topics", r.Topics.Error},
		{"store", r.Store.Error},
		{"rollups", r.Rollups.Error},
	} {
		if s.err != "" {
			out = append(out, s.name)
		}
	}
	return out
}

// WriteJSON writes r as one JSON object, for scripts.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes r for a person at a terminal: one block per section,
// a failed section as one line saying why, and every setting that differs
// from the expected one marked with "*".
func (r *Report) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	p := func(format string, args ...any) { fmt.Fprintf(tw, format, args...) }

	brokers := strings.Join(r.Brokers, ",")
	if brokers == "" {
		brokers = "none configured"
	}
	p("cairn status at %s, brokers %s\n", r.Time.Format(time.DateTime+" MST"), brokers)

	g := r.Group
	p("\nWriter group %s", g.Name)
	if g.Error != "" {
		p(": FAILED: %s\n", g.Error)
	} else {
		p(": %s, %d members", orDash(g.State), len(g.Members))
		if len(g.Members) == 0 {
			p(" (no writer is consuming)")
		}
		p("\n")
		if len(g.Members) > 0 {
			p("  member\tinstance\tclient\thost\tpartitions of %s\n", g.Topic)
			for _, m := range g.Members {
				p("  %s\t%s\t%s\t%s\t%s\n", m.MemberID, orDash(m.InstanceID), m.ClientID, m.ClientHost, partitions(m.Partitions))
			}
		}
		p("\nLag of %s: %d records\n", g.Topic, g.TotalLag)
		p("  partition\tcommitted\tend\tlag\tmember\n")
		for _, l := range g.Lag {
			committed := strconv.FormatInt(l.Committed, 10)
			if l.Committed < 0 {
				committed = "none"
			}
			if l.Error != "" {
				p("  %d\t%s\t%d\t?\t%s  (%s)\n", l.Partition, committed, l.End, orDash(l.Member), l.Error)
				continue
			}
			p("  %d\t%s\t%d\t%d\t%s\n", l.Partition, committed, l.End, l.Lag, orDash(l.Member))
		}
	}

	d := r.DeadLetter
	if d.Error != "" {
		p("\nDead letters in %s: FAILED: %s\n", d.Topic, d.Error)
	} else {
		p("\nDead letters in %s: %d records\n", d.Topic, d.Records)
	}

	t := r.Topics
	if t.Error != "" {
		p("\nTopics: FAILED: %s\n", t.Error)
	} else {
		p("\nTopics: %d differences from the expected settings (marked *, expected in brackets)\n", t.Mismatches)
		p("  topic\trole\tpartitions\treplication factor\tretention.ms\tmin.insync.replicas\n")
		for _, tp := range t.Topics {
			switch {
			case tp.Missing:
				p("  %s\t%s\tMISSING *\t\t\t\n", tp.Name, tp.Role)
			case tp.Error != "":
				p("  %s\t%s\tFAILED: %s\t\t\t\n", tp.Name, tp.Role, tp.Error)
			default:
				p("  %s\t%s", tp.Name, tp.Role)
				for _, s := range tp.Settings {
					if s.Mismatch {
						p("\t%s * [%s]", orDash(s.Value), s.Expected)
					} else {
						p("\t%s", s.Value)
					}
				}
				p("\n")
			}
		}
	}

	s := r.Store
	switch {
	case s.Error != "" && s.Name == "":
		p("\nStore: FAILED: %s\n", s.Error)
	case s.Error != "":
		p("\nStore %s: UNREACHABLE: %s\n", s.Name, s.Error)
	default:
		p("\nStore %s: reachable (%s)\n", s.Name, time.Duration(s.Seconds*float64(time.Second)).Round(10*time.Microsecond))
	}

	ru := r.Rollups
	p("\nMetrics rollup %s-%s UTC: ", ru.From.Format("15:04"), ru.To.Format("15:04"))
	switch {
	case ru.Error != "":
		p("FAILED: %s\n", ru.Error)
	case ru.Absent || len(ru.Lines) == 0:
		p("no rollups\n")
	default:
		p("%d namespaces\n", len(ru.Lines))
		p("  namespace\tqueries\terrors\tcache hits\tbloom short-circuits\tp50\tp99\n")
		for _, l := range ru.Lines {
			p("  %s\t%d\t%d\t%d\t%d\t%s\t%s\n", l.Namespace, l.Queries, l.Errors, l.CacheHits, l.BloomShortCircuits, seconds(l.P50), seconds(l.P99))
		}
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// partitions is a sorted partition list as ranges: 0-3,7.
func partitions(ps []int32) string {
	if len(ps) == 0 {
		return "-"
	}
	var b strings.Builder
	for i := 0; i < len(ps); {
		j := i
		for j+1 < len(ps) && ps[j+1] == ps[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		if j > i {
			fmt.Fprintf(&b, "%d-%d", ps[i], ps[j])
		} else {
			fmt.Fprintf(&b, "%d", ps[i])
		}
		i = j + 1
	}
	return b.String()
}

func seconds(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(10 * time.Microsecond).String()
}
