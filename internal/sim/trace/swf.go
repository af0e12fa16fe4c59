package trace

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"time"
	"vgrid/internal/model"
)

// SWFOptions says how SWF jobs become leases. The zero value is Haizea's
// mapping: one VM per requested processor, 1 CPU and 1,024 MiB per VM, a
// 600 MiB placeholder image, preemptible best-effort leases, jobs without a
// requested time skipped.
type SWFOptions struct {
	// CPUsPerNode is the CPUs of each VM; 0 means 1.
	CPUsPerNode float64
	// MemoryMiB is the memory of each VM; 0 means 1,024.
	MemoryMiB int64
	// ProcsPerNode divides the processor count into VMs, rounding up; 0
	// means 1. Keep 1 for Haizea's SDSC-BLUE subsets, whose field 8 already
	// holds nodes (the filter divided it by 8); use 8 for LLNL Atlas.
	ProcsPerNode int
	// Image and ImageSizeMiB name the placeholder image; "" and 0 mean
	// "NONE.img" and 600 MiB, as in Haizea's files.
	Image        string
	ImageSizeMiB int64
	// PreferAllocated takes the processor count from the allocated
	// processors (field 5) and falls back to the requested ones (field 8);
	// by default it is the other way round.
	PreferAllocated bool
	// RuntimeAsRequested uses the run time (field 4) as the requested time
	// of jobs without one (field 9 ≤ 0) instead of skipping them, that is,
	// it assumes perfect estimates. NASA-iPSC and the Lublin model have no
	// requested times at all: without this option every job is skipped.
	RuntimeAsRequested bool
	// ProjectByGroup takes the project from the group (field 13, "g<id>")
	// rather than the user (field 12, "u<id>"). Either way the other field
	// is the fallback when the first is missing (-1).
	ProjectByGroup bool
	// KeepCancelled keeps jobs cancelled while queued (status 5, run time
	// < 0) as Haizea's 2008 reader did for the HPDC'08 experiments (which
	// is how 30days.swf counts 5,545 requests): the lease asks for its full
	// requested time and has CancelAfter set to the job's wait time (field
	// 3, at least 1 s). By default they are skipped, as in Haizea 1.0.
	KeepCancelled bool
	// NotPreemptible makes the leases non-preemptible (Haizea's best-effort
	// leases from SWF are preemptible).
	NotPreemptible bool
}

func (o SWFOptions) withDefaults() SWFOptions {
	if !(o.CPUsPerNode > 0) {
		o.CPUsPerNode = 1
	}
	if o.MemoryMiB <= 0 {
		o.MemoryMiB = 1024
	}
	if o.ProcsPerNode <= 0 {
		o.ProcsPerNode = 1
	}
	if o.Image == "" {
		o.Image = "NONE.img"
	}
	if o.ImageSizeMiB <= 0 {
		o.ImageSizeMiB = 600
	}
	return o
}

// SWFStats counts what ReadSWFStats did with the jobs of a trace. Every
// data line is either a lease or counted in exactly one Skipped field (the
// first that applies, in the order listed).
type SWFStats struct {
	// Jobs is the number of data lines (neither blank nor ';' comments).
	Jobs   int
	Leases int
	// SkippedNoSubmit: the submit time (field 2) is missing (< 0).
	SkippedNoSubmit int
	// SkippedCancelled: cancelled while queued (status 5 with run time < 0)
	// and KeepCancelled is off.
	SkippedCancelled int
	// Cancelled: cancelled while queued and kept (KeepCancelled), with
	// CancelAfter set.
	Cancelled int
	// SkippedNoProcs: neither requested (field 8) nor allocated (field 5)
	// processors are known (≤ 0).
	SkippedNoProcs int
	// SkippedNoRequestedTime: the requested time (field 9) is ≤ 0 and
	// RuntimeAsRequested is off or the run time is unknown too.
	SkippedNoRequestedTime int
	// RunTimeCapped: the job ran longer than requested; RealDuration is the
	// requested time.
	RunTimeCapped int
	// RunTimeZero: the job ran 0 s (under a second, as SWF counts whole
	// seconds); RealDuration is 1 s because 0 would mean the full duration.
	RunTimeZero int
	// RunTimeUnknown: the run time is missing (< 0) on a kept job; the
	// lease runs for its whole requested time.
	RunTimeUnknown int
}

// Skipped returns the number of jobs that did not become leases.
func (s SWFStats) Skipped() int {
	return s.SkippedNoSubmit + s.SkippedCancelled + s.SkippedNoProcs + s.SkippedNoRequestedTime
}

// swfFields names the 18 SWF fields, 1-based as in the PWA definition.
var swfFields = [...]string{"", "job number", "submit time", "wait time", "run time",
	"allocated processors", "average cpu time", "used memory", "requested processors",
	"requested time", "requested memory", "status", "user", "group", "executable",
	"queue", "partition", "preceding job", "think time"}

const swfNumFields = 18

// maxLine bounds the length of one line of a text trace.
const maxLine = 1 << 20

// ReadSWF reads a Standard Workload Format trace; see ReadSWFStats.
func ReadSWF(r io.Reader, opt SWFOptions) ([]Lease, error) {
	leases, _, err := ReadSWFStats(r, opt)
	return leases, err
}

// ReadSWFStats reads a Standard Workload Format trace and turns each usable
// job into a best-effort lease (see SWFOptions), reporting what it skipped.
// Lines must have 18 numeric fields; lines starting with ';' are comments.
func ReadSWFStats(r io.Reader, opt SWFOptions) ([]Lease, SWFStats, error) {
	opt = opt.withDefaults()
	var (
		st       SWFStats
		coll     collector
		fields   [swfNumFields][]byte
		projects = map[string]string{}
	)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	line := 0
	for sc.Scan() {
		line++
		n := splitFields(sc.Bytes(), fields[:], ';')
		if n == 0 {
			continue // blank or comment
		}
		st.Jobs++
		if n != swfNumFields {
			return nil, st, fmt.Errorf("read swf: line %d: got %d fields, want %d", line, n, swfNumFields)
		}
		var v [swfNumFields + 1]float64 // 1-based like the field names
		for k := range fields {
			x, err := parseNum(fields[k])
			if err != nil {
				return nil, st, fmt.Errorf("read swf: line %d: field %d (%s): %q is not a number", line, k+1, swfFields[k+1], fields[k])
			}
			v[k+1] = x
		}
		ferr := func(k int, err error) error {
			return fmt.Errorf("read swf: line %d: field %d (%s): %s: %w", line, k, swfFields[k], fields[k-1], err)
		}
		submit, err := seconds(v[2])
		if err != nil {
			return nil, st, ferr(2, err)
		}
		run, err := seconds(v[4])
		if err != nil {
			return nil, st, ferr(4, err)
		}
		req, err := seconds(v[9])
		if err != nil {
			return nil, st, ferr(9, err)
		}
		pk, alt := 8, 5
		if opt.PreferAllocated {
			pk, alt = 5, 8
		}
		if v[pk] <= 0 {
			pk = alt
		}
		procs := v[pk]
		cancelled := v[11] == 5 && run < 0
		switch {
		case submit < 0:
			st.SkippedNoSubmit++
			continue
		case cancelled && !opt.KeepCancelled:
			st.SkippedCancelled++
			continue
		case procs <= 0:
			st.SkippedNoProcs++
			continue
		case req <= 0 && (!opt.RuntimeAsRequested || run <= 0):
			st.SkippedNoRequestedTime++
			continue
		}
		p, err := count(procs)
		if err != nil {
			return nil, st, ferr(pk, err)
		}
		if req <= 0 {
			req = run
		}
		real := run
		var cancelAfter time.Duration
		switch {
		case cancelled:
			st.Cancelled++
			real = 0
			wait, err := seconds(v[3])
			if err != nil {
				return nil, st, ferr(3, err)
			}
			cancelAfter = max(wait, time.Second)
		case run < 0:
			st.RunTimeUnknown++
			real = 0
		case run == 0:
			st.RunTimeZero++
			real = min(time.Second, req)
		case run > req:
			st.RunTimeCapped++
			real = req
		}
		ppn := int64(opt.ProcsPerNode)
		l := Lease{
			ID:           string(fields[0]),
			Submit:       submit,
			Kind:         model.LeaseBestEffort,
			Duration:     req,
			RealDuration: real,
			CancelAfter:  cancelAfter,
			Nodes:        int((p + ppn - 1) / ppn),
			CPUs:         opt.CPUsPerNode,
			MemoryMiB:    opt.MemoryMiB,
			Image:        opt.Image,
			ImageSizeMiB: opt.ImageSizeMiB,
			Preemptible:  !opt.NotPreemptible,
			Project:      swfProject(projects, fields[11], v[12], fields[12], v[13], opt.ProjectByGroup),
		}
		coll.add(l)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, st, fmt.Errorf("read swf: line %d: longer than %d bytes", line+1, maxLine)
		}
		return nil, st, fmt.Errorf("read swf: line %d: %w", line+1, err)
	}
	leases := coll.leases()
	st.Leases = len(leases)
	sortBySubmit(leases)
	return leases, st, nil
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f' }

// splitFields splits b at white space into dst without allocating and
// returns how many fields the line has (dst holds the first len(dst)). A
// line whose first field starts with comment (0: none) has no fields.
func splitFields(b []byte, dst [][]byte, comment byte) int {
	n := 0
	for i := 0; i < len(b); {
		for i < len(b) && isSpace(b[i]) {
			i++
		}
		if i == len(b) {
			break
		}
		if n == 0 && comment != 0 && b[i] == comment {
			break
		}
		j := i
		for j < len(b) && !isSpace(b[j]) {
			j++
		}
		if n < len(dst) {
			dst[n] = b[i:j]
		}
		n++
		i = j
	}
	return n
}

// swfProject returns "u<user>" or "g<group>" (interned), preferring the
// group when byGroup is set, or "" when both are missing (negative).
func swfProject(interned map[string]string, user []byte, uv float64, group []byte, gv float64, byGroup bool) string {
	var key []byte
	switch {
	case byGroup && gv >= 0:
		key = append([]byte{'g'}, bytes.TrimLeft(group, "+")...)
	case uv >= 0:
		key = append([]byte{'u'}, bytes.TrimLeft(user, "+")...)
	case gv >= 0:
		key = append([]byte{'g'}, bytes.TrimLeft(group, "+")...)
	default:
		return ""
	}
	if s, ok := interned[string(key)]; ok {
		return s
	}
	s := string(key)
	interned[s] = s
	return s
}
