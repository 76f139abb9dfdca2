package bench

import (
	"fmt"
	"io"
	"math"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// printSearch writes the steps of the rate search.
func printSearch(w io.Writer, o Options, steps []Step) {
	fmt.Fprintf(w, "### Highest rate of (a) with p99 ≤ %v: %d × %s\n\n", o.FindMaxP99, o.Entities, shapeText(o))
	fmt.Fprintf(w, "Each step %v at a constant rate; the rate doubles from %v q/s until p99 exceeds the bound, then bisects to 5%%.\n\n", o.SearchStep, o.Rate)
	fmt.Fprintln(w, "| rate asked (q/s) | achieved (q/s) | p50 (ms) | p99 (ms) | max (ms) | errors | p99 ≤ bound |")
	fmt.Fprintln(w, "|--:|--:|--:|--:|--:|--:|:-:|")
	best := -1
	for i, s := range steps {
		sum := s.Result.Latency.Summary()
		fmt.Fprintf(w, "| %.0f | %.0f | %s | %s | %s | %d | %s |\n", s.Rate, s.Result.Achieved(), fmtMS(sum.P50), fmtMS(sum.P99), fmtMS(sum.Max), s.Result.Errors, passWord(s.Pass))
		if s.Pass && (best < 0 || s.Rate > steps[best].Rate) {
			best = i
		}
	}
	if best >= 0 {
		fmt.Fprintf(w, "\nHighest rate with p99 ≤ %v: **%.0f q/s** (p99 %s ms in its step).\n\n", o.FindMaxP99, steps[best].Rate, fmtMS(steps[best].Latency))
	} else {
		fmt.Fprintf(w, "\nNo rate tried kept p99 ≤ %v.\n\n", o.FindMaxP99)
	}
}

// gcText describes the collector's settings: GOGC, GOMEMLIMIT and the
// heap floor.
func gcText(floor uint64) string {
	gogc, limit := os.Getenv("GOGC"), os.Getenv("GOMEMLIMIT")
	if gogc == "" {
		gogc = "100 (default)"
	}
	t := "GOGC " + gogc
	if limit != "" {
		t += ", GOMEMLIMIT " + limit
	}
	if floor == 0 || strings.EqualFold(gogc, "off") {
		return t + ", no heap floor (CAIRN_GC_HEAP_FLOOR_MIB)"
	}
	return t + fmt.Sprintf(", heap floor %d MiB (CAIRN_GC_HEAP_FLOOR_MIB)", floor>>20)
}

// shapeText gives the features asked, for headings: "50", or "49 of 50".
func shapeText(o Options) string {
	if o.Ask == 0 || o.Ask == o.Features {
		return strconv.Itoa(o.Features)
	}
	return fmt.Sprintf("%d of %d", o.Ask, o.Features)
}

// askedText tells which features each query asks for.
func askedText(o Options) string {
	if o.Ask == 0 || o.Ask == o.Features {
		return fmt.Sprintf("all %d features", o.Features)
	}
	return fmt.Sprintf("the first %d of %d features", o.Ask, o.Features)
}

// printReport writes the side-by-side report.
func printReport(w io.Writer, o Options, b *setup, rate float64) {
	paths := b.paths
	rounds := len(paths[0].rounds)
	fmt.Fprintf(w, "### %d × %s at %.0f q/s\n\n", o.Entities, shapeText(o), rate)
	shown := b.uri
	if u, err := url.Parse(b.uri); err == nil {
		shown = u.Redacted()
	}
	fmt.Fprintf(w, "- store: `%s`", shown)
	if b.ownPrefix {
		fmt.Fprint(w, " (a prefix of the benchmark's own, deleted afterwards)")
	}
	fmt.Fprintf(w, "; %d entities written, each query asks %d of them (distinct, random) for %s\n", o.Pool, o.Entities, askedText(o))
	warm := "no warm-up"
	if o.Warmup > 0 {
		warm = fmt.Sprintf("after a %v warm-up of each", o.Warmup)
	}
	var names []string
	for _, p := range paths {
		names = append(names, p.name)
	}
	fmt.Fprintf(w, "- open loop at %.0f q/s, latency from each request's due time, at most %d in flight per path; %d rounds of %v per path, %s in turn (the order reversed every other round), %s\n",
		rate, o.MaxInFlight, rounds, o.Slice, strings.Join(names, ", "), warm)
	if b.server != nil {
		serverProcs := "Go's default"
		if o.ServerProcs > 0 {
			serverProcs = strconv.Itoa(o.ServerProcs)
		}
		fmt.Fprintf(w, "- load generator and floor client in one process (GOMAXPROCS %d), the query server in another (`cairn bench-server`, GOMAXPROCS %s), on %d CPUs (%s); %s %s/%s\n",
			runtime.GOMAXPROCS(0), serverProcs, runtime.NumCPU(), cpuModel(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
		if slices.ContainsFunc(paths, isRelay) {
			fmt.Fprint(w, "- the relay of (r) in a process of its own (`cairn bench-server --relay`, GOMAXPROCS as the query server's): a fasthttp server whose handler makes (b)'s read, nothing else\n")
		}
		if b.pin != nil {
			fmt.Fprintf(w, "- pinned for the rounds (--pin): %s\n", b.pin.describe())
		}
	} else {
		fmt.Fprintf(w, "- load generator, query server and floor client in one process (GOMAXPROCS %d), on %d CPUs (%s); %s %s/%s\n",
			runtime.GOMAXPROCS(0), runtime.NumCPU(), cpuModel(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	}
	fmt.Fprintf(w, "- garbage collector: %s\n", gcText(o.GCHeapFloor))
	if use, ok := b.cpuEnd.since(b.cpuStart); ok {
		// The counters are sampled at clock ticks: the machine's total
		// can come out a little under its parts.
		rest := use.machine - use.self
		if o.Security || o.Resolvers || o.Metrics {
			fmt.Fprintf(w, "- CPU used during the rounds, in CPUs of the %d: query servers", use.cpus)
			for i, p := range paths {
				if i < len(use.paths) && !math.IsNaN(use.paths[i]) && !isRelay(p) {
					cpus := use.paths[i] / b.cpuEnd.at.Sub(b.cpuStart.at).Seconds()
					fmt.Fprintf(w, " %s %.2f", p.name, cpus)
					rest -= cpus
				}
			}
			if o.Resolvers {
				fmt.Fprintf(w, ", load generator, floor client and http resolver service %.2f", use.self)
			} else if o.Metrics {
				fmt.Fprintf(w, ", load generator, floor client and Kafka broker %.2f", use.self)
			} else {
				fmt.Fprintf(w, ", load generator and floor client %.2f", use.self)
			}
		} else if use.serverOK {
			fmt.Fprintf(w, "- CPU used during the rounds, in CPUs of the %d: query server %.2f, load generator and floor client %.2f", use.cpus, use.server, use.self)
			rest -= use.server
		} else {
			fmt.Fprintf(w, "- CPU used during the rounds, in CPUs of the %d: this process %.2f", use.cpus, use.self)
		}
		if i := slices.IndexFunc(paths, isRelay); i >= 0 && i < len(use.paths) && !math.IsNaN(use.paths[i]) {
			cpus := use.paths[i] / b.cpuEnd.at.Sub(b.cpuStart.at).Seconds()
			fmt.Fprintf(w, ", relay (r) %.2f", cpus)
			rest -= cpus
		}
		if use.storeOK {
			fmt.Fprintf(w, ", redis-server %.2f", use.store)
			rest -= use.store
		}
		if o.Resolvers {
			fmt.Fprintf(w, ", other processes (PostgreSQL among them) %.2f\n", max(rest, 0))
		} else {
			fmt.Fprintf(w, ", other processes %.2f\n", max(rest, 0))
		}
	}
	fmt.Fprintf(w, "- %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))

	header := "| path | achieved (q/s) | errors | p50 (ms) | p90 (ms) | p99 (ms) | p99.9 (ms) | max (ms) | send lag p99 (ms) | server CPU per query (µs) |\n|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
	fmt.Fprintf(w, "Median over %d rounds of each figure (errors: total; server CPU per query: the query server process's own CPU time, user and system, over the path's slices, divided by their queries):\n\n%s\n", rounds, header)
	meds := make([]Summary, len(paths))
	for i, p := range paths {
		meds[i] = medianSummary(p.rounds)
		var ach []float64
		var lag []time.Duration
		errs := 0
		for _, r := range p.rounds {
			ach = append(ach, r.Achieved())
			lag = append(lag, r.Lag.Percentile(99))
			errs += r.Errors
		}
		m := meds[i]
		fmt.Fprintf(w, "| %s | %.0f | %d | %s | %s | %s | %s | %s | %s | %s |\n", p.label, medianFloat(ach), errs,
			fmtMS(m.P50), fmtMS(m.P90), fmtMS(m.P99), fmtMS(m.P999), fmtMS(m.Max), fmtMS(medianDuration(lag)), p.cpuText())
	}
	fmt.Fprint(w, cpuNote(b))
	if b.floor == nil {
		fmt.Fprint(w, "\n(b) skipped: the floor is measured for Redis and Valkey stores only.\n\n")
	} else {
		a, fl := meds[0], meds[slices.IndexFunc(paths, func(p *path) bool { return p.name == "(b)" })]
		fmt.Fprintf(w, "\n(a)/(b): p50 **%.2f×**, p99 **%.2f×**; the server adds %s ms at p50 and %s ms at p99 over the bare round trip.\n",
			ratio(a.P50, fl.P50), ratio(a.P99, fl.P99), fmtMS(a.P50-fl.P50), fmtMS(a.P99-fl.P99))
		if i := slices.IndexFunc(paths, isRelay); i >= 0 {
			r := meds[i]
			fmt.Fprintf(w, "\n(a)/(r): p50 **%.2f×**, p99 **%.2f×**; cairn's work in the query server adds %s ms at p50 and %s ms at p99 over the same read relayed by a bare process.\n",
				ratio(a.P50, r.P50), ratio(a.P99, r.P99), fmtMS(a.P50-r.P50), fmtMS(a.P99-r.P99))
			fmt.Fprintf(w, "\n(r)/(b): p50 **%.2f×**, p99 **%.2f×**; the process hop over HTTP alone adds %s ms at p50 and %s ms at p99 over the bare round trip.\n",
				ratio(r.P50, fl.P50), ratio(r.P99, fl.P99), fmtMS(r.P50-fl.P50), fmtMS(r.P99-fl.P99))
		}
		fmt.Fprintln(w)
	}
	if o.Formats {
		printFormats(w, b, meds)
	}
	if o.Security || o.Resolvers {
		printServers(w, b, meds)
	}
	if o.Resolvers {
		printResolvers(w, o, b)
	}
	if o.Metrics {
		printMetrics(w, b, meds)
	}
	printTail(w, b, meds)

	fmt.Fprintf(w, "All rounds pooled:\n\n%s\n", header)
	pooled := make([]Samples, len(paths))
	for i, p := range paths {
		var lat, lag Samples
		count, errs := 0, 0
		var elapsed time.Duration
		for _, r := range p.rounds {
			lat = append(lat, r.Latency...)
			lag = append(lag, r.Lag...)
			count += r.Count
			errs += r.Errors
			elapsed += max(r.Elapsed, r.Load.Duration)
		}
		slices.Sort(lat)
		slices.Sort(lag)
		pooled[i] = lat
		s := lat.Summary()
		fmt.Fprintf(w, "| %s | %.0f | %d | %s | %s | %s | %s | %s | %s | %s |\n", p.label, float64(count)/elapsed.Seconds(), errs,
			fmtMS(s.P50), fmtMS(s.P90), fmtMS(s.P99), fmtMS(s.P999), fmtMS(s.Max), fmtMS(lag.Percentile(99)), p.cpuText())
	}
	for i, p := range paths {
		fmt.Fprintf(w, "\nLatency of %s, all rounds:\n\n```\n%s```\n", p.label, pooled[i].Histogram())
	}
	fmt.Fprintln(w)
}

// printServers compares the query servers of --security and --resolvers
// with the plain one, (a): the medians over the rounds of what each adds
// to the latency, and the CPU each uses per query.
func printServers(w io.Writer, b *setup, meds []Summary) {
	use, cpuOK := b.cpuEnd.since(b.cpuStart)
	fmt.Fprint(w, "Each query server against the plain one, (a), medians over the rounds:\n\n")
	fmt.Fprint(w, "| path | p50 (ms) | p99 (ms) | added at p50 (µs) | added at p99 (µs) | p99 ratio to (a) | server CPU per query (µs) |\n|---|--:|--:|--:|--:|--:|--:|\n")
	a := meds[0]
	for i, p := range b.paths {
		if p.server == nil || isRelay(p) {
			continue
		}
		m := meds[i]
		perQuery := "n/a"
		if cpuOK && i < len(use.paths) && !math.IsNaN(use.paths[i]) {
			n := 0
			for _, r := range p.rounds {
				n += r.Count
			}
			if n > 0 {
				perQuery = fmt.Sprintf("%.0f", use.paths[i]/float64(n)*1e6)
			}
		}
		fmt.Fprintf(w, "| %s | %s | %s | %+.0f | %+.0f | %.3f | %s |\n", p.label, fmtMS(m.P50), fmtMS(m.P99),
			float64(m.P50-a.P50)/float64(time.Microsecond), float64(m.P99-a.P99)/float64(time.Microsecond), ratio(m.P99, a.P99), perQuery)
	}
	fmt.Fprintln(w)
}

// printFormats compares the answer forms of --formats, (a), (g) and (h),
// all answered by one query server: latency (medians over the rounds),
// the server's CPU per query over each path's own slices, and the
// answers' sizes and Content-Types.
func printFormats(w io.Writer, b *setup, meds []Summary) {
	fmt.Fprint(w, "Answer forms, one query server, medians over the rounds; server CPU over each path's own slices (read from /proc/PID/stat before and after each slice) per query; size and Content-Type of every answer, warm-up included:\n\n")
	fmt.Fprint(w, "| path | queries | p50 (ms) | p99 (ms) | server CPU over the slices (ms) | server CPU per query (µs) | answer size, median (bytes) | Content-Type seen |\n|---|--:|--:|--:|--:|--:|--:|---|\n")
	for i, p := range b.paths {
		if p.answers == nil {
			continue
		}
		queries := 0
		for _, r := range p.rounds {
			queries += r.Count
		}
		total, perQuery := "n/a", "n/a"
		if secs, ok := p.cpu.perQuery(); ok {
			total, perQuery = fmt.Sprintf("%.0f", p.cpu.ticks/userHZ*1e3), fmt.Sprintf("%.0f", secs*1e6)
		}
		size, _ := p.answers.medianSize()
		fmt.Fprintf(w, "| %s | %d | %s | %s | %s | %s | %d | %s |\n", p.label, queries, fmtMS(meds[i].P50), fmtMS(meds[i].P99), total, perQuery, size, p.answers.typesText())
	}
	fmt.Fprint(w, "\nA server that does not know a form answers row JSON (`application/json`), so that the sizes are then alike.\n\n")
}

// printResolvers says how (e) and (f) computed their features, and how
// many calls each resolver made, as its query server counted them.
func printResolvers(w io.Writer, o Options, b *setup) {
	first := o.Features - ResolvedFeatures
	fmt.Fprintf(w, "(e) and (f) serve features %s to %s from a resolver declared with `max_staleness: 0s`: their stored values are never served, so every query computes them (the cost measured here); the other %d come from the store as in (a). ",
		featureName(first), featureName(o.Features-1), first)
	fmt.Fprintf(w, "(e)'s http resolver calls a service in the load generator's process on 127.0.0.1, which answers at once; (f)'s sql resolver runs `%s` on PostgreSQL (`%s`). ", resolvedQuery(o.Features), redactDSN(o.PGDSN))
	fmt.Fprint(w, "The query servers have no Kafka: nothing computed is persisted.\n\n")
	for _, p := range b.paths {
		if !p.resolver {
			continue
		}
		queries := 0
		for _, r := range p.rounds {
			queries += r.Count
		}
		if p.callsErr != nil {
			fmt.Fprintf(w, "- %s: resolver calls unknown (%v)\n", p.name, p.callsErr)
			continue
		}
		fmt.Fprintf(w, "- %s: resolver calls (`cairn_resolver_calls_total`, warm-up and first query included): ok %.0f, error %.0f, timeout %.0f; %d queries measured\n",
			p.name, p.calls["ok"], p.calls["error"], p.calls["timeout"], queries)
	}
	fmt.Fprintf(w, "- the http resolver service answered %d calls\n\n", b.serviceCalls)
}

// medianSummary returns, figure by figure, the median over rs.
func medianSummary(rs []*Result) Summary {
	var p50, p90, p99, p999, mx []time.Duration
	for _, r := range rs {
		s := r.Latency.Summary()
		p50, p90, p99, p999, mx = append(p50, s.P50), append(p90, s.P90), append(p99, s.P99), append(p999, s.P999), append(mx, s.Max)
	}
	return Summary{P50: medianDuration(p50), P90: medianDuration(p90), P99: medianDuration(p99), P999: medianDuration(p999), Max: medianDuration(mx)}
}

// medianDuration returns the median of ds, the mean of the middle two for
// an even count; ds is reordered.
func medianDuration(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	n := len(ds)
	if n%2 == 1 {
		return ds[n/2]
	}
	return (ds[n/2-1] + ds[n/2]) / 2
}

func medianFloat(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}

func ratio(a, b time.Duration) float64 {
	if b <= 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// fmtMS formats d in milliseconds with microsecond precision.
func fmtMS(d time.Duration) string { return fmt.Sprintf("%.3f", d.Seconds()*1000) }

func achieved(r *Result) string { return fmt.Sprintf("%6.0f q/s", r.Achieved()) }

func passWord(pass bool) string {
	if pass {
		return "yes"
	}
	return "no"
}

// isRelay reports whether p is path (r), whose process is a relay, not
// a query server.
func isRelay(p *path) bool { return p.name == relayName }

// cpuText is the path's server CPU per query in microseconds, for the
// tables: "n/a" for a path without a query server process (the floor,
// or --in-process) or on a system without /proc.
func (p *path) cpuText() string {
	secs, ok := p.cpu.perQuery()
	if !ok {
		return "n/a"
	}
	return fmt.Sprintf("%.0f", secs*1e6)
}

// cpuNote explains the server CPU column.
func cpuNote(b *setup) string {
	if b.server == nil {
		return "\nServer CPU per query n/a: with --in-process the query server shares this process's CPU time with the load generator.\n"
	}
	return fmt.Sprintf("\nServer CPU per query is the query server process's own accounting (utime + stime in /proc/PID/stat, in ticks of %d ms), read before and after each of the path's slices: it counts what the server spent on the path's queries, whatever the load generator, redis-server or anything else did to the latency on these shared CPUs, and is within a tick or two per slice of the truth.\n", 1000/userHZ)
}

// printMetrics compares (i), (a)'s server with query metrics, with (a),
// and says what the metrics topic received.
func printMetrics(w io.Writer, b *setup, meds []Summary) {
	ia, ii := -1, -1
	for i, p := range b.paths {
		switch p.name {
		case "(a)":
			ia = i
		case "(i)":
			ii = i
		}
	}
	if ia < 0 || ii < 0 {
		return
	}
	a, m := b.paths[ia], b.paths[ii]
	fmt.Fprint(w, "Query metrics: (i) is a second query server process configured as (a)'s, but with Kafka: its aggregator counts every query and sends one record per interval through its producer, as in `cairn serve`. The broker (the one `cairn dev` embeds, its log fsynced on every produce) runs in the load generator's process: its CPU is not counted as the server's. Medians over the rounds:\n\n")
	fmt.Fprint(w, "| path | p50 (ms) | p99 (ms) | server CPU per query (µs) |\n|---|--:|--:|--:|\n")
	for _, i := range []int{ia, ii} {
		p := b.paths[i]
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", p.label, fmtMS(meds[i].P50), fmtMS(meds[i].P99), p.cpuText())
	}
	if sa, okA := a.cpu.perQuery(); okA {
		if sm, okM := m.cpu.perQuery(); okM {
			fmt.Fprintf(w, "\nWhat the query metrics cost the server: %+.0f µs of CPU per query ((i) − (a)).\n", (sm-sa)*1e6)
		}
	}
	queries := 0
	for _, r := range m.rounds {
		queries += r.Count
	}
	topic := b.broker.cfg.MetricsTopic
	if b.seen.err != nil {
		fmt.Fprintf(w, "\nThe records of `%s` could not all be read: %v (%d read).\n\n", topic, b.seen.err, b.seen.records)
		return
	}
	fmt.Fprintf(w, "\nRecords on `%s` once (i)'s server had stopped (sending its last, partial, interval): **%d**, of %d distinct intervals; they count %d queries of namespace %s, against %d answered by (i) in the rounds (the warm-up and the first query count too).\n\n",
		topic, b.seen.records, b.seen.intervals, b.seen.queries, Namespace, queries)
}

// printTail says, per path, where its tail may come from: how long
// goroutines waited for a CPU, and what the collector did, in the query
// server process answering it and in the load generator, over the
// path's own slices.
func printTail(w io.Writer, b *setup, meds []Summary) {
	fmt.Fprint(w, "Where the tail comes from, over each path's own slices (runtime/metrics of the query server process answering it, asked before and after each slice, and of the load generator's process): ")
	fmt.Fprint(w, "*runnable wait* is how long goroutines waited, runnable, for a CPU (/sched/latencies:seconds): a request waits as long as the goroutines it goes through, in the load generator (sending, reading the answer) and in the server; ")
	fmt.Fprint(w, "*GC* is the collector's cycles and stop-the-world pauses (/sched/pauses/total/gc:seconds), whose marking between pauses also takes CPU from the requests. Times in µs, the upper bound of the runtime's histogram bucket. ")
	fmt.Fprint(w, "*Run queue* is the kernel's side: how long the process's threads waited, runnable, for a CPU that another thread or process held (the second field of /proc/PID/task/*/schedstat), summed over the path's slices and divided by their queries: the Go runtime does not see it.\n\n")
	fmt.Fprint(w, "| path | p99 (ms) | server runnable wait p99 / p99.9 / max | server waits ≥ 1 ms | server GC cycles | server GC pause p99 / max | server run queue per query (µs) | load generator runnable wait p99 / p99.9 / max | load generator waits ≥ 1 ms | load generator GC cycles | load generator run queue per query (µs) |\n|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for i, p := range b.paths {
		srvWait, srvLong, srvGC, srvPause := "n/a", "n/a", "n/a", "n/a"
		if t := p.tail; t.serverOK {
			srvWait = quantiles(t.server.Sched, 0.99, 0.999, 1)
			srvLong = fmt.Sprint(t.server.Sched.above(time.Millisecond))
			srvGC = fmt.Sprint(t.server.GCCycles)
			srvPause = quantiles(t.server.GCPauses, 0.99, 1)
		}
		g, t := p.tail.gen, p.tail
		queries := 0
		for _, r := range p.rounds {
			queries += r.Count
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %d | %d | %s |\n", p.label, fmtMS(meds[i].P99), srvWait, srvLong, srvGC, srvPause,
			queuePerQuery(t.serverQueue, t.serverQueueBad, t.queueSlices, queries),
			quantiles(g.Sched, 0.99, 0.999, 1), g.Sched.above(time.Millisecond), g.GCCycles,
			queuePerQuery(t.genQueue, t.genQueueBad, t.queueSlices, queries))
	}
	for _, p := range b.paths {
		if p.tail.serverErr != nil {
			fmt.Fprintf(w, "\n%s: server figures n/a: %v\n", p.name, p.tail.serverErr)
		}
	}
	if b.server == nil {
		fmt.Fprint(w, "\nWith --in-process the query server's goroutines are the load generator's process's: its figures are in the load generator's columns.\n")
	}
	fmt.Fprint(w, "\nRead it so: a path whose p99 is far above the floor's, with runnable waits of the same order in its server or in the load generator, or much time in the run queue, lost its tail waiting for a CPU (the machine, not the code); GC cycles with long pauses point at the collector; neither points at the work itself (CPU per query, above).\n\n")
}

// quantiles formats quantiles qs of h in microseconds, separated by
// slashes; "n/a" for an empty h.
func quantiles(h Hist, qs ...float64) string {
	if h.total() == 0 {
		return "n/a"
	}
	parts := make([]string, len(qs))
	for i, q := range qs {
		d, _ := h.quantile(q)
		parts[i] = fmt.Sprintf("%.0f", float64(d)/float64(time.Microsecond))
	}
	return strings.Join(parts, " / ")
}
