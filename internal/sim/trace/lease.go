package trace

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"vgrid/internal/model"
)

// Lease is one lease request of a trace, independent of the trace format.
type Lease struct {
	ID string
	// Submit is when the request arrives, as an offset from the trace start.
	Submit time.Duration
	// Kind is one of the Kind constants.
	Kind model.LeaseKind
	// Start is the requested start of a reservation (and the earliest start
	// of a deadline lease that names one), as an offset from the trace start;
	// 0 for other kinds. It may be negative when the trace asks for a start
	// before the trace began.
	Start time.Duration
	// Duration is the requested duration (walltime).
	Duration time.Duration
	// RealDuration is how long the lease actually runs (at most Duration);
	// 0 means it runs for Duration.
	RealDuration time.Duration
	// CancelAfter, when positive, withdraws the request if it has not
	// started this long after Submit (SWF jobs that were cancelled while
	// queued, kept with SWFOptions.KeepCancelled); 0 means never.
	CancelAfter time.Duration
	// Deadline is the time by which a deadline lease must end, as an offset
	// from the trace start; 0 for other kinds.
	Deadline time.Duration
	// Nodes is the number of VMs, all of which must run at the same time.
	Nodes int
	// CPUs, MemoryMiB and DiskMiB are per VM.
	CPUs      float64
	MemoryMiB int64
	DiskMiB   int64
	// Image names the VM image ("" when the lease needs none);
	// ImageSizeMiB is its size.
	Image        string
	ImageSizeMiB int64
	Preemptible  bool
	// Project groups leases for fair share: "u<user>" or "g<group>" for SWF
	// traces, "" when the trace does not say.
	Project string
}

// Run returns how long the lease actually runs: RealDuration, or Duration
// when RealDuration is 0.
func (l Lease) Run() time.Duration {
	if l.RealDuration > 0 {
		return l.RealDuration
	}
	return l.Duration
}

// Format names a trace format.
type Format string

// Trace formats.
const (
	FormatSWF       Format = "swf"
	FormatLWF       Format = "lwf"
	FormatInjection Format = "injection"
)

// Open reads the trace at path with the default SWF options; see OpenWith.
func Open(path string) ([]Lease, Format, error) {
	return OpenWith(path, SWFOptions{})
}

// OpenWith reads the trace at path, choosing the reader from the name: .swf
// is SWF (read with opt), .lwf and .xml are LWF XML when the first
// non-blank byte is '<' and the injection format otherwise. A trailing .gz
// decompresses first (for example NASA-iPSC-1993-3.1-cln.swf.gz).
func OpenWith(path string, opt SWFOptions) ([]Lease, Format, error) {
	w, format, err := OpenWorkload(path, opt)
	return w.Leases, format, err
}

// OpenWorkload reads the trace at path as OpenWith does, with the site
// an LWF file describes (Workload.Site; nil for other formats and for
// LWF files without a <site>).
func OpenWorkload(path string, opt SWFOptions) (Workload, Format, error) {
	f, err := os.Open(path)
	if err != nil {
		return Workload{}, "", fmt.Errorf("open trace: %w", err)
	}
	defer f.Close()
	name := strings.ToLower(filepath.Base(path))
	var r io.Reader = f
	if base, ok := strings.CutSuffix(name, ".gz"); ok {
		zr, err := gzip.NewReader(f)
		if err != nil {
			return Workload{}, "", fmt.Errorf("open trace %s: gzip: %w", path, err)
		}
		defer zr.Close()
		r, name = zr, base
	}
	var (
		w      Workload
		format Format
	)
	switch filepath.Ext(name) {
	case ".swf":
		format = FormatSWF
		w.Leases, err = ReadSWF(r, opt)
	case ".lwf", ".xml":
		br := bufio.NewReaderSize(r, 64<<10)
		if isXML(br) {
			format = FormatLWF
			w, err = ReadLWFWorkload(br)
		} else {
			format = FormatInjection
			w.Leases, err = ReadInjection(br)
		}
	default:
		return Workload{}, "", fmt.Errorf("open trace %s: unknown extension %q (want .swf, .lwf or .xml, optionally with .gz)", path, filepath.Ext(name))
	}
	if err != nil {
		return Workload{}, format, fmt.Errorf("open trace %s: %w", path, err)
	}
	return w, format, nil
}

// isXML reports whether the first non-blank byte (after an optional UTF-8
// byte order mark) is '<'.
func isXML(br *bufio.Reader) bool {
	for n := 64; ; n *= 4 {
		buf, err := br.Peek(n)
		b := bytes.TrimPrefix(buf, []byte("\xef\xbb\xbf"))
		b = bytes.TrimLeft(b, " \t\r\n")
		if len(b) > 0 {
			return b[0] == '<'
		}
		if err != nil || n >= br.Size() {
			return false
		}
	}
}

// Merge returns the leases of several traces in one list sorted by
// submission time; ties keep the order of the arguments. Lease IDs are not
// changed: use Prefix first when the traces' IDs may collide (SWF job
// numbers and injection sequence numbers both start at 1).
func Merge(traces ...[]Lease) []Lease {
	n := 0
	for _, t := range traces {
		n += len(t)
	}
	out := make([]Lease, 0, n)
	for _, t := range traces {
		out = append(out, t...)
	}
	sortBySubmit(out)
	return out
}

// Prefix prepends p to the ID of every lease, in place, and returns leases.
func Prefix(leases []Lease, p string) []Lease {
	for i := range leases {
		leases[i].ID = p + leases[i].ID
	}
	return leases
}

// Coarsen makes every lease's VMs k times as large (CPUs, memory and
// disk) and k times fewer, rounded up, in place, and returns leases: the
// same request in bigger VMs (e.g. reservations of whole hosts where the
// rest of the trace asks for cores). k below 2 changes nothing.
func Coarsen(leases []Lease, k int) []Lease {
	if k < 2 {
		return leases
	}
	for i := range leases {
		l := &leases[i]
		l.CPUs *= float64(k)
		l.MemoryMiB *= int64(k)
		l.DiskMiB *= int64(k)
		l.Nodes = (l.Nodes + k - 1) / k
	}
	return leases
}

// sortBySubmit sorts stably by Submit, skipping the sort when the leases
// are already in order (the usual case).
func sortBySubmit(leases []Lease) {
	for i := 1; i < len(leases); i++ {
		if leases[i].Submit < leases[i-1].Submit {
			slices.SortStableFunc(leases, func(a, b Lease) int {
				switch {
				case a.Submit < b.Submit:
					return -1
				case a.Submit > b.Submit:
					return 1
				}
				return 0
			})
			return
		}
	}
}

// collector gathers leases in chunks so that a large trace is copied once,
// into a slice of the exact size, rather than on every growth of one slice.
type collector struct {
	full [][]Lease
	cur  []Lease
	n    int
}

func (c *collector) add(l Lease) {
	if len(c.cur) == cap(c.cur) {
		if c.cur != nil {
			c.full = append(c.full, c.cur)
		}
		c.cur = make([]Lease, 0, min(max(2*cap(c.cur), 256), 1<<14))
	}
	c.cur = append(c.cur, l)
	c.n++
}

// leases returns everything added, in order, or nil if nothing was.
func (c *collector) leases() []Lease {
	if c.n == 0 {
		return nil
	}
	if len(c.full) == 0 {
		return c.cur
	}
	out := make([]Lease, 0, c.n)
	for _, ch := range c.full {
		out = append(out, ch...)
	}
	return append(out, c.cur...)
}
