package dynamo

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// LockFile is the feature-name mapping declared once and for all: the
// short id of every feature, committed beside the feature file
// (features.lock, CAIRN_FEATURES_LOCK) and written only by `cairn features
// lock`, which gives new features the next ids and never changes or reuses
// one.
//
// A Store opened with a LockFile ([Config.FeatureIDs]) takes ids from it
// and never allocates one at run time, so no two regions of a global table
// can ever disagree on an id, whatever they do concurrently and whatever
// order replication applies their writes in (docs/multi-region.md, DynamoDB Global
// Tables). Its text form is
//
//	# comment
//	next 1c
//	user.age 1
//	user.name 2
//
// one "FQN ID" line per feature, ids in base 36 as they appear in the
// table, and one "next N" line: the number, in base 36, the next new
// feature gets. Every id is below it, and numbers below it are never handed
// out again, even those of features since removed.
type LockFile struct {
	// IDs maps each feature's FQN to its short id.
	IDs map[string]string
	// Next is the number the next new feature's id is drawn from.
	Next int64
}

// lockHeader opens every lock file Encode writes.
const lockHeader = "# Feature short ids of cairn's online store. Written by `cairn features lock`;\n" +
	"# commit it with the feature file. Never edit an id: values are stored under it.\n"

// maxLockLine bounds one line of a lock file.
const maxLockLine = 4096

// ReadLockFile reads and parses the lock file at path.
func ReadLockFile(path string) (*LockFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("dynamo: feature lock file (CAIRN_FEATURES_LOCK): %w", err)
	}
	l, err := ParseLockFile(b)
	if err != nil {
		return nil, fmt.Errorf("dynamo: feature lock file %s: %w", path, err)
	}
	return l, nil
}

// ParseLockFile parses the text form of a lock file. Errors name the line.
func ParseLockFile(b []byte) (*LockFile, error) {
	l := &LockFile{IDs: map[string]string{}, Next: -1}
	byID := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 256), maxLockLine)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		fields := strings.Fields(text)
		if len(fields) != 2 {
			return nil, fmt.Errorf("line %d: %q: want \"FQN ID\" or \"next N\"", line, text)
		}
		key, val := fields[0], fields[1]
		if key == "next" {
			if l.Next >= 0 {
				return nil, fmt.Errorf("line %d: a second \"next\" line", line)
			}
			n, err := strconv.ParseInt(val, 36, 64)
			if err != nil || n < 1 || strconv.FormatInt(n, 36) != val {
				return nil, fmt.Errorf("line %d: next %q: want a positive base-36 number in lowercase", line, val)
			}
			l.Next = n
			continue
		}
		if err := checkLockFQN(key); err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		if _, err := idNumber(val); err != nil {
			return nil, fmt.Errorf("line %d: feature %q: %w", line, key, err)
		}
		if prev, dup := l.IDs[key]; dup {
			return nil, fmt.Errorf("line %d: feature %q listed twice, with ids %q and %q", line, key, prev, val)
		}
		if other, dup := byID[val]; dup {
			return nil, fmt.Errorf("line %d: id %q given to both %q and %q", line, val, other, key)
		}
		l.IDs[key], byID[val] = val, key
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if l.Next < 0 {
		return nil, errors.New("no \"next N\" line")
	}
	for fqn, id := range l.IDs {
		if n, _ := idNumber(id); n >= l.Next {
			return nil, fmt.Errorf("feature %q has id %q, not below next %q: ids at or above it may be handed out again",
				fqn, id, strconv.FormatInt(l.Next, 36))
		}
	}
	return l, nil
}

// checkLockFQN reports whether s can be a feature name in a lock file.
func checkLockFQN(s string) error {
	switch {
	case s == "next":
		return errors.New(`"next" is not a feature name`)
	case strings.HasPrefix(s, "_"):
		return fmt.Errorf("feature %q: names starting with _ are reserved", s)
	case !strings.Contains(s, ".") || strings.HasPrefix(s, ".") || strings.HasSuffix(s, "."):
		return fmt.Errorf("feature %q: want namespace.name", s)
	}
	return nil
}

// idNumber returns the number whose base-36 text is id.
func idNumber(id string) (int64, error) {
	n, err := strconv.ParseInt(id, 36, 64)
	if !validID(id) || err != nil || n < 1 || strconv.FormatInt(n, 36) != id {
		return 0, fmt.Errorf("id %q: want a positive base-36 number in lowercase, without leading zeros, other than pk and sk", id)
	}
	return n, nil
}

// Encode returns the text form of l: its ids in the order they were handed
// out, so that a new feature adds a line at the end.
func (l *LockFile) Encode() []byte {
	fqns := make([]string, 0, len(l.IDs))
	for fqn := range l.IDs {
		fqns = append(fqns, fqn)
	}
	num := func(fqn string) int64 { n, _ := idNumber(l.IDs[fqn]); return n }
	slices.SortFunc(fqns, func(a, b string) int { return int(max(-1, min(1, num(a)-num(b)))) })
	var b bytes.Buffer
	b.WriteString(lockHeader)
	fmt.Fprintf(&b, "next %s\n", strconv.FormatInt(l.Next, 36))
	for _, fqn := range fqns {
		fmt.Fprintf(&b, "%s %s\n", fqn, l.IDs[fqn])
	}
	return b.Bytes()
}

// WriteFile writes l to path atomically (a temporary file renamed over it).
func (l *LockFile) WriteFile(path string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("dynamo: write feature lock file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(l.Encode()); err != nil {
		tmp.Close()
		return fmt.Errorf("dynamo: write feature lock file %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("dynamo: write feature lock file %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("dynamo: write feature lock file %s: %w", path, err)
	}
	return nil
}

// NewLockFile returns an empty lock file: the first id handed out is "1".
func NewLockFile() *LockFile { return &LockFile{IDs: map[string]string{}, Next: 1} }

// Add gives each FQN of fqns without an id the next id, in sorted FQN
// order, so that the same lock file and features always give the same ids.
// It never changes an id. It returns the FQNs added, sorted.
func (l *LockFile) Add(fqns []string) ([]string, error) {
	var added []string
	for _, fqn := range fqns {
		if _, ok := l.IDs[fqn]; !ok && !slices.Contains(added, fqn) {
			if err := checkLockFQN(fqn); err != nil {
				return nil, fmt.Errorf("dynamo: feature lock file: %w", err)
			}
			added = append(added, fqn)
		}
	}
	slices.Sort(added)
	for _, fqn := range added {
		for !validID(strconv.FormatInt(l.Next, 36)) {
			l.Next++ // "pk" and "sk" are key attributes
		}
		l.IDs[fqn] = strconv.FormatInt(l.Next, 36)
		l.Next++
	}
	return added, nil
}

// Merge adds to l the mapping of other (the table's, read by
// [Store.FeatureIDs]) and raises Next to other's. A feature holding
// different ids in the two, or an id given to two features, is an error
// naming both, and l is left unchanged.
func (l *LockFile) Merge(other *LockFile) error {
	byID := make(map[string]string, len(l.IDs))
	for fqn, id := range l.IDs {
		byID[id] = fqn
	}
	var errs []error
	for fqn, id := range other.IDs {
		if mine, ok := l.IDs[fqn]; ok && mine != id {
			errs = append(errs, fmt.Errorf("feature %q has id %q in the lock file and %q in the table", fqn, mine, id))
		}
		if owner, ok := byID[id]; ok && owner != fqn {
			errs = append(errs, fmt.Errorf("id %q belongs to %q in the lock file and to %q in the table", id, owner, fqn))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("dynamo: feature lock file and table disagree:\n%w", errors.Join(sortErrs(errs)...))
	}
	for fqn, id := range other.IDs {
		l.IDs[fqn] = id
		if n, _ := idNumber(id); n >= l.Next {
			l.Next = n + 1
		}
	}
	l.Next = max(l.Next, other.Next)
	return nil
}

// Missing returns the FQNs among fqns without an id in l, sorted.
func (l *LockFile) Missing(fqns []string) []string {
	var out []string
	for _, fqn := range fqns {
		if _, ok := l.IDs[fqn]; !ok && !slices.Contains(out, fqn) {
			out = append(out, fqn)
		}
	}
	slices.Sort(out)
	return out
}

// Check returns an error naming every FQN of fqns (the feature file's
// features) without an id in l: a process refuses to start with one, since
// it could neither read nor write that feature.
func (l *LockFile) Check(fqns []string) error {
	if m := l.Missing(fqns); len(m) > 0 {
		return fmt.Errorf("dynamo: feature(s) %s have no id in the feature lock file (CAIRN_FEATURES_LOCK): "+
			"run `cairn features lock` and deploy the lock file with the feature file", strings.Join(m, ", "))
	}
	return nil
}

// sortErrs sorts errs by text, so that messages listing them are stable.
func sortErrs(errs []error) []error {
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return errs
}
