package bench

import (
	"fmt"
	"os"
	"runtime/pprof"
	"runtime/trace"
)

// StartCPUProfile starts profiling the CPU into a new file at path; stop
// ends it and closes the file.
func StartCPUProfile(path string) (stop func(), _ error) {
	pf, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(pf); err != nil {
		pf.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); pf.Close() }, nil
}

// StartTrace starts writing the runtime's execution trace into a new file
// at path; stop ends it and closes the file.
func StartTrace(path string) (stop func(), _ error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("execution trace: %w", err)
	}
	if err := trace.Start(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("execution trace: %w", err)
	}
	return func() { trace.Stop(); f.Close() }, nil
}

// WriteHeapProfile writes the heap profile to path: allocations since the
// process started, and the memory in use at the last garbage collection.
func WriteHeapProfile(path string) error {
	pf, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("bench: heap profile: %w", err)
	}
	if err := pprof.Lookup("heap").WriteTo(pf, 0); err != nil {
		pf.Close()
		return fmt.Errorf("bench: heap profile: %w", err)
	}
	return pf.Close()
}
