package trace

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"time"
	"vgrid/internal/model"
)

// injFields names the ten fields of Haizea's injection format.
var injFields = [...]string{"request time", "start time", "duration", "real duration",
	"nodes", "cpu", "memory", "disk", "image", "image size"}

// ReadInjection reads Haizea's old space-separated lease format (the AR
// injection files of the HPDC'08 experiments), one lease per line:
//
//	reqTime startTime duration realDuration numNodes CPU mem disk vmImage vmImageSize
//
// with times in seconds from the trace start, CPU in CPUs per node, memory
// and disk in MiB per node, the image size in MiB. A start time of -1 makes
// a best-effort lease, any other a reservation (kept as written, even when
// it lies before the request or the trace start: the scheduler should
// reject those). A negative request time is clamped to 0. Blank lines,
// lines starting with '#' or ';', and a header line before the first lease
// (one starting with a letter) are skipped. Leases are numbered 1, 2, ...
// in file order; the image name loses its quotes ('NONE.img').
// Reservations are not preemptible, best-effort leases are.
func ReadInjection(r io.Reader) ([]Lease, error) {
	var leases []Lease
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxLine)
	line := 0
	var fields [len(injFields)][]byte
	for sc.Scan() {
		line++
		n := splitFields(sc.Bytes(), fields[:], 0)
		if n == 0 || fields[0][0] == '#' || fields[0][0] == ';' {
			continue
		}
		if c := fields[0][0] | 0x20; len(leases) == 0 && c >= 'a' && c <= 'z' {
			continue // header
		}
		if n != len(fields) {
			return nil, fmt.Errorf("read injection: line %d: got %d fields, want %d", line, n, len(fields))
		}
		var v [len(injFields)]float64
		for k := range fields {
			if k == 8 {
				continue
			}
			x, err := parseNum(fields[k])
			if err != nil {
				return nil, fmt.Errorf("read injection: line %d: field %d (%s): %q is not a number", line, k+1, injFields[k], fields[k])
			}
			v[k] = x
		}
		ferr := func(k int, err error) error {
			return fmt.Errorf("read injection: line %d: field %d (%s): %s: %w", line, k+1, injFields[k], fields[k], err)
		}
		var t [4]time.Duration
		for k := range t {
			d, err := seconds(v[k])
			if err != nil {
				return nil, ferr(k, err)
			}
			t[k] = d
		}
		var c [len(injFields)]int64
		for _, k := range []int{4, 6, 7, 9} {
			x, err := count(v[k])
			if err != nil {
				return nil, ferr(k, err)
			}
			c[k] = x
		}
		switch {
		case t[2] <= 0:
			return nil, ferr(2, errors.New("want more than 0"))
		case t[3] <= 0:
			return nil, ferr(3, errors.New("want more than 0"))
		case c[4] == 0 || c[4] > 1<<31-1:
			return nil, ferr(4, errors.New("want 1 or more"))
		case v[5] < 0 || v[5] > maxCount:
			return nil, ferr(5, errors.New("out of range"))
		}
		l := Lease{
			ID:           strconv.Itoa(len(leases) + 1),
			Submit:       max(t[0], 0),
			Kind:         model.LeaseReservation,
			Start:        t[1],
			Duration:     t[2],
			RealDuration: min(t[3], t[2]),
			Nodes:        int(c[4]),
			CPUs:         v[5],
			MemoryMiB:    c[6],
			DiskMiB:      c[7],
			Image:        unquote(string(fields[8])),
			ImageSizeMiB: c[9],
		}
		if v[1] == -1 {
			l.Kind, l.Start, l.Preemptible = model.LeaseBestEffort, 0, true
		}
		leases = append(leases, l)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, fmt.Errorf("read injection: line %d: longer than %d bytes", line+1, maxLine)
		}
		return nil, fmt.Errorf("read injection: line %d: %w", line+1, err)
	}
	sortBySubmit(leases)
	return leases, nil
}
