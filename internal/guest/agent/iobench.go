package agent

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"vgrid/internal/model"
)

// The iobench subcommand (vgrid-guest-agent iobench ...) is a small disk
// benchmark for the storage harness (bench/storage): the guest has
// busybox only, whose dd neither measures latencies nor opens files with
// O_DIRECT. It is hidden: the host runs it through exec, nothing else
// uses it.
//
// Modes: seqwrite writes --size bytes in --bs blocks from the start of
// the file (created or truncated) and fsyncs it; seqread reads --size
// bytes (or the whole file, if shorter) in --bs blocks; randread and
// randwrite do --count (or, with --count 0, as many as fit in
// --duration) reads or writes of --bs bytes at random offsets, multiples
// of --bs, in the first --size bytes of the file (which must exist and
// hold a block), and randwrite fsyncs at the end. The fsync is part of
// the measured time. With --direct the file is opened with O_DIRECT
// (the page cache is bypassed; --bs must then be a multiple of 512).
// --drop-caches syncs and empties the page cache first (root only).
//
// One JSON line (IOBenchResult) goes to standard output.

// IOBenchCommand is the subcommand's name: vgrid-guest-agent iobench.
const IOBenchCommand = "iobench"

// I/O benchmark modes.
const (
	IOSeqWrite  = "seqwrite"
	IOSeqRead   = "seqread"
	IORandRead  = "randread"
	IORandWrite = "randwrite"
)

// Limits of an iobench run.
const (
	maxIOBlock = 64 << 20
	// maxIOOps bounds the operations of one run (and the latencies kept).
	maxIOOps = 10_000_000
	// directAlign is the alignment O_DIRECT wants of buffers, offsets and
	// lengths (the logical block size of virtio-blk, rounded up to a page
	// for the buffer).
	directAlign = 512
	bufAlign    = 4096
)

// IOBench is one run of the benchmark.
type IOBench struct {
	File       string
	Size       int64         // bytes written/read (seq), range of the offsets (rand)
	Mode       string        // IOSeqWrite, IOSeqRead, IORandRead, IORandWrite
	BS         int           // block size, bytes
	Count      int64         // rand: operations; 0: until Duration has passed
	Duration   time.Duration // rand with Count 0
	Direct     bool          // O_DIRECT
	DropCaches bool          // sync and drop the page cache first
	Seed       uint64        // of the random offsets and data (0: from the clock)
}

// IOBenchResult is what a run measured. Latencies are those of the single
// read or write calls, as fine as the clock (in a guest whose clocksource
// is jiffies, one tick: use MeanUs, exact at any clock since one call is
// under way at a time); the final fsync counts in Seconds only.
type IOBenchResult struct {
	Mode    string  `json:"mode"`
	Direct  bool    `json:"direct"`
	BS      int     `json:"bs"`
	Ops     int64   `json:"ops"`
	Bytes   int64   `json:"bytes"`
	Seconds float64 `json:"seconds"`
	IOPS    float64 `json:"iops"`
	MBps    float64 `json:"mb_per_s"` // 10^6 bytes per second
	MeanUs  float64 `json:"mean_us"`  // Seconds/Ops (the fsync included)
	P50us   float64 `json:"p50_us"`
	P99us   float64 `json:"p99_us"`
	MaxUs   float64 `json:"max_us"`
}

// ParseIOBenchArgs parses the subcommand's arguments (those after
// "iobench") and checks them; errors name the flag.
func ParseIOBenchArgs(args []string) (IOBench, error) {
	fs := flag.NewFlagSet(IOBenchCommand, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var b IOBench
	var size string
	fs.StringVar(&b.File, "file", "", "the file to benchmark")
	fs.StringVar(&size, "size", "", "bytes written or read (seq), range of the offsets (rand): 64Mi, 1048576, ...")
	fs.StringVar(&b.Mode, "mode", "", "seqwrite, seqread, randread or randwrite")
	fs.IntVar(&b.BS, "bs", 4096, "block size in bytes")
	fs.Int64Var(&b.Count, "count", 0, "rand: operations (0: for --duration)")
	fs.DurationVar(&b.Duration, "duration", 10*time.Second, "rand with --count 0: how long")
	fs.BoolVar(&b.Direct, "direct", false, "open the file with O_DIRECT")
	fs.BoolVar(&b.DropCaches, "drop-caches", false, "sync and drop the page cache first")
	fs.Uint64Var(&b.Seed, "seed", 0, "seed of the random offsets and data (0: from the clock)")
	if err := fs.Parse(args); err != nil {
		return IOBench{}, err
	}
	if fs.NArg() > 0 {
		return IOBench{}, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if size != "" {
		n, err := model.ParseByteSize(size)
		if err != nil {
			return IOBench{}, fmt.Errorf("--size: %w", err)
		}
		b.Size = int64(n)
	}
	return b, b.check()
}

func (b IOBench) check() error {
	switch {
	case b.File == "":
		return errors.New("--file: required")
	case b.Mode != IOSeqWrite && b.Mode != IOSeqRead && b.Mode != IORandRead && b.Mode != IORandWrite:
		return fmt.Errorf("--mode %q: want seqwrite, seqread, randread or randwrite", b.Mode)
	case b.BS <= 0 || b.BS > maxIOBlock:
		return fmt.Errorf("--bs %d: want 1 to %d bytes", b.BS, maxIOBlock)
	case b.Direct && b.BS%directAlign != 0:
		return fmt.Errorf("--bs %d: with --direct, want a multiple of %d", b.BS, directAlign)
	case b.Size <= 0:
		return fmt.Errorf("--size: required, more than 0 bytes")
	case b.Size < int64(b.BS):
		return fmt.Errorf("--size %d: less than one block (--bs %d)", b.Size, b.BS)
	case b.Count < 0 || b.Count > maxIOOps:
		return fmt.Errorf("--count %d: want 0 to %d", b.Count, maxIOOps)
	case b.Count == 0 && (b.Mode == IORandRead || b.Mode == IORandWrite) && b.Duration <= 0:
		return fmt.Errorf("--duration %s: with --count 0, want more than 0", b.Duration)
	}
	return nil
}

// IOBenchMain runs the subcommand with args and prints its result as one
// JSON line on w.
func IOBenchMain(args []string, w io.Writer) error {
	b, err := ParseIOBenchArgs(args)
	if err != nil {
		return fmt.Errorf("%s: %w", IOBenchCommand, err)
	}
	res, err := RunIOBench(b)
	if err != nil {
		return fmt.Errorf("%s: %w", IOBenchCommand, err)
	}
	return json.NewEncoder(w).Encode(res)
}

// RunIOBench runs b.
func RunIOBench(b IOBench) (IOBenchResult, error) {
	if err := b.check(); err != nil {
		return IOBenchResult{}, err
	}
	if b.DropCaches {
		unix.Sync()
		if err := os.WriteFile("/proc/sys/vm/drop_caches", []byte("3\n"), 0); err != nil {
			return IOBenchResult{}, fmt.Errorf("--drop-caches: %w", err)
		}
	}
	flags := os.O_RDONLY
	switch b.Mode {
	case IOSeqWrite:
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	case IORandWrite:
		flags = os.O_WRONLY
	}
	if b.Direct {
		flags |= unix.O_DIRECT
	}
	f, err := os.OpenFile(b.File, flags, 0o644)
	if err != nil {
		return IOBenchResult{}, fmt.Errorf("--file: %w", err)
	}
	defer f.Close()
	seed := b.Seed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	buf := alignedBuffer(b.BS)
	if b.Mode == IOSeqWrite || b.Mode == IORandWrite {
		// Data that does not compress, in case anything on the way does.
		for i := 0; i+8 <= len(buf); i += 8 {
			v := rng.Uint64()
			for k := range 8 {
				buf[i+k] = byte(v >> (8 * k))
			}
		}
	}
	var lat []time.Duration
	var ops, total int64
	var t0 time.Time
	switch b.Mode {
	case IOSeqWrite, IOSeqRead:
		n := b.Size / int64(b.BS)
		if b.Size%int64(b.BS) != 0 && !b.Direct {
			n++ // a short last block (not with O_DIRECT, which wants whole blocks)
		}
		if n > maxIOOps {
			return IOBenchResult{}, fmt.Errorf("--size %d in blocks of %d: more than %d operations", b.Size, b.BS, maxIOOps)
		}
		lat = make([]time.Duration, 0, n)
		t0 = time.Now()
		for i := int64(0); i < n; i++ {
			want := min(int64(b.BS), b.Size-i*int64(b.BS))
			s := time.Now()
			var k int
			if b.Mode == IOSeqWrite {
				k, err = f.Write(buf[:want])
			} else {
				k, err = io.ReadFull(f, buf[:want])
			}
			lat = append(lat, time.Since(s))
			total += int64(k)
			ops++
			if b.Mode == IOSeqRead && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)) {
				break // the file is shorter than --size
			}
			if err != nil {
				return IOBenchResult{}, fmt.Errorf("%s at %d: %w", b.Mode, i*int64(b.BS), err)
			}
		}
	default: // random
		st, err := f.Stat()
		if err != nil {
			return IOBenchResult{}, err
		}
		span := min(b.Size, st.Size()) / int64(b.BS)
		if span < 1 {
			return IOBenchResult{}, fmt.Errorf("--file: %d bytes, less than one block of %d (write it first, e.g. with --mode seqwrite)", st.Size(), b.BS)
		}
		if b.Count > 0 {
			lat = make([]time.Duration, 0, b.Count)
		}
		t0 = time.Now()
		deadline := t0.Add(b.Duration)
		for i := int64(0); ; i++ {
			if b.Count > 0 && i >= b.Count || b.Count == 0 && (i >= maxIOOps || i%16 == 0 && !time.Now().Before(deadline)) {
				break
			}
			off := rng.Int64N(span) * int64(b.BS)
			s := time.Now()
			var k int
			if b.Mode == IORandWrite {
				k, err = f.WriteAt(buf, off)
			} else {
				k, err = f.ReadAt(buf, off)
			}
			lat = append(lat, time.Since(s))
			if err != nil {
				return IOBenchResult{}, fmt.Errorf("%s at %d: %w", b.Mode, off, err)
			}
			total += int64(k)
			ops++
		}
	}
	if b.Mode == IOSeqWrite || b.Mode == IORandWrite {
		if err := f.Sync(); err != nil {
			return IOBenchResult{}, fmt.Errorf("fsync: %w", err)
		}
	}
	return summarize(b, ops, total, time.Since(t0), lat), nil
}

// summarize makes the result of a run from its operations, bytes, time
// and per-operation latencies.
func summarize(b IOBench, ops, bytes int64, took time.Duration, lat []time.Duration) IOBenchResult {
	r := IOBenchResult{Mode: b.Mode, Direct: b.Direct, BS: b.BS, Ops: ops, Bytes: bytes, Seconds: took.Seconds()}
	if took > 0 {
		r.IOPS = float64(ops) / took.Seconds()
		r.MBps = float64(bytes) / 1e6 / took.Seconds()
	}
	if ops > 0 {
		r.MeanUs = took.Seconds() * 1e6 / float64(ops)
	}
	if len(lat) > 0 {
		s := slices.Clone(lat)
		slices.Sort(s)
		us := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
		r.P50us, r.P99us, r.MaxUs = us(percentile(s, 50)), us(percentile(s, 99)), us(s[len(s)-1])
	}
	return r
}

// percentile is the nearest-rank p-th percentile of sorted (not empty).
func percentile(sorted []time.Duration, p float64) time.Duration {
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// alignedBuffer returns n bytes starting at a multiple of bufAlign, as
// O_DIRECT wants.
func alignedBuffer(n int) []byte {
	raw := make([]byte, n+bufAlign)
	off := 0
	if r := int(uintptr(unsafe.Pointer(&raw[0])) % bufAlign); r != 0 {
		off = bufAlign - r
	}
	return raw[off : off+n : off+n]
}

// Args gives a run's arguments as the subcommand takes them.
func (b IOBench) Args() []string {
	a := []string{IOBenchCommand, "--file", b.File, "--mode", b.Mode, "--size", strconv.FormatInt(b.Size, 10),
		"--bs", strconv.Itoa(b.BS), "--count", strconv.FormatInt(b.Count, 10), "--duration", b.Duration.String()}
	if b.Direct {
		a = append(a, "--direct")
	}
	if b.DropCaches {
		a = append(a, "--drop-caches")
	}
	if b.Seed != 0 {
		a = append(a, "--seed", strconv.FormatUint(b.Seed, 10))
	}
	return a
}
