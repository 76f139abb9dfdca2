package bench

import (
	"errors"
	"fmt"
	"os"
	"runtime"
)

// With Options.Pin the processes of a measurement are pinned to CPUs for
// its rounds, so that the load generator and the query servers never
// wait for each other's CPU: this process (load generator, floor client,
// and with Metrics the broker) runs on the first CPU it may use, with
// GOMAXPROCS 1, and every query server process on the others, with as
// many GOMAXPROCS (unless Options.ServerProcs says otherwise). The
// store's process (redis-server) is not ours and is left where it is: it
// runs on either. This is the experiment behind the tail: if the
// server's p99 comes from the load generator sharing its CPUs, it falls
// when they are pinned apart.

// pinning is the CPUs of a pinned measurement.
type pinning struct {
	gen, servers []int
	// serverProcs is the query servers' GOMAXPROCS, set by the time
	// they start.
	serverProcs int
}

// planPinning splits the CPUs this process may use: the first for it,
// the others for the query servers.
func planPinning() (*pinning, error) {
	cpus, err := allowedCPUs()
	if err != nil {
		return nil, err
	}
	if len(cpus) < 2 {
		return nil, fmt.Errorf("--pin: this process may use %d CPU (%v): want 2 or more, one for the load generator and the rest for the query servers", len(cpus), cpus)
	}
	return &pinning{gen: cpus[:1], servers: cpus[1:], serverProcs: len(cpus) - 1}, nil
}

// apply pins this process and b's query server processes, and returns
// a function putting this process back on all its CPUs. The servers stay
// pinned until they stop.
func (p *pinning) apply(b *setup) (restore func(), _ error) {
	seen := map[*serverProcess]bool{}
	var errs []error
	for _, pa := range b.paths {
		if s := pa.cpuServer; s != nil && !seen[s] {
			seen[s] = true
			errs = append(errs, pinProcess(s.pid(), p.servers))
		}
	}
	all := append(append([]int(nil), p.gen...), p.servers...)
	self := os.Getpid()
	errs = append(errs, pinProcess(self, p.gen))
	procs := runtime.GOMAXPROCS(len(p.gen))
	restore = func() {
		runtime.GOMAXPROCS(procs)
		_ = pinProcess(self, all)
	}
	if err := errors.Join(errs...); err != nil {
		restore()
		return nil, err
	}
	return restore, nil
}

// describe says where the processes run, for the report.
func (p *pinning) describe() string {
	return fmt.Sprintf("load generator and floor client (this process, GOMAXPROCS %d) on CPU %v, query servers (GOMAXPROCS %d) on CPU %v, redis-server and other processes unpinned",
		len(p.gen), p.gen, p.serverProcs, p.servers)
}
