package agent

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseIOBenchArgs(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		want    IOBench
		wantErr string // part of the error; "" for none
	}{
		{"seqwrite with units", []string{"--file", "/f", "--mode", "seqwrite", "--size", "64Mi", "--bs", "1048576"},
			IOBench{File: "/f", Mode: IOSeqWrite, Size: 64 << 20, BS: 1 << 20, Duration: 10 * time.Second}, ""},
		{"randread direct count", []string{"--file=/f", "--mode=randread", "--size=1048576", "--count=100", "--direct", "--seed=7"},
			IOBench{File: "/f", Mode: IORandRead, Size: 1 << 20, BS: 4096, Count: 100, Direct: true, Seed: 7, Duration: 10 * time.Second}, ""},
		{"no file", []string{"--mode", "seqread", "--size", "1Mi"}, IOBench{}, "--file"},
		{"bad mode", []string{"--file", "/f", "--mode", "scan", "--size", "1Mi"}, IOBench{}, "--mode"},
		{"no size", []string{"--file", "/f", "--mode", "seqread"}, IOBench{}, "--size"},
		{"bad size", []string{"--file", "/f", "--mode", "seqread", "--size", "lots"}, IOBench{}, "--size"},
		{"size under a block", []string{"--file", "/f", "--mode", "seqread", "--size", "100"}, IOBench{}, "less than one block"},
		{"unaligned direct", []string{"--file", "/f", "--mode", "randread", "--size", "1Mi", "--bs", "1000", "--direct"}, IOBench{}, "multiple of 512"},
		{"zero bs", []string{"--file", "/f", "--mode", "randread", "--size", "1Mi", "--bs", "0"}, IOBench{}, "--bs"},
		{"negative count", []string{"--file", "/f", "--mode", "randread", "--size", "1Mi", "--count", "-1"}, IOBench{}, "--count"},
		{"no count no duration", []string{"--file", "/f", "--mode", "randwrite", "--size", "1Mi", "--duration", "0s"}, IOBench{}, "--duration"},
		{"unknown flag", []string{"--file", "/f", "--mode", "seqread", "--size", "1Mi", "--fast"}, IOBench{}, "fast"},
		{"stray argument", []string{"--file", "/f", "--mode", "seqread", "--size", "1Mi", "extra"}, IOBench{}, "extra"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseIOBenchArgs(tc.args)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseIOBenchArgs(%q) = %+v, %v; want an error about %q", tc.args, got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("ParseIOBenchArgs(%q) = %+v, %v; want %+v", tc.args, got, err, tc.want)
			}
			// Args gives back what parses to the same run.
			again, err := ParseIOBenchArgs(got.Args()[1:])
			if err != nil || again != got {
				t.Errorf("round trip through Args: %+v, %v; want %+v", again, err, got)
			}
		})
	}
}

// TestRunIOBench runs every mode on a temporary file, through the
// subcommand's entry point, with and without O_DIRECT, and checks what
// each JSON line says against what the run must have done.
func TestRunIOBench(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	const size = 1 << 20
	for _, direct := range []bool{false, true} {
		steps := []struct {
			mode      string
			bs        int
			count     int64
			wantOps   int64
			wantBytes int64
		}{
			{IOSeqWrite, 64 << 10, 0, size / (64 << 10), size},
			{IOSeqRead, 64 << 10, 0, size / (64 << 10), size},
			{IORandRead, 4096, 200, 200, 200 * 4096},
			{IORandWrite, 4096, 50, 50, 50 * 4096},
		}
		for _, st := range steps {
			name := st.mode
			if direct {
				name += "-direct"
			}
			t.Run(name, func(t *testing.T) {
				args := IOBench{File: file, Mode: st.mode, Size: size, BS: st.bs, Count: st.count, Direct: direct, Seed: 1}.Args()[1:]
				var out bytes.Buffer
				err := IOBenchMain(args, &out)
				if err != nil && direct && strings.Contains(err.Error(), "invalid argument") {
					t.Skipf("the temporary directory's filesystem refuses O_DIRECT: %v", err)
				}
				if err != nil {
					t.Fatal(err)
				}
				if n := bytes.Count(out.Bytes(), []byte("\n")); n != 1 {
					t.Fatalf("%d lines of output, want one JSON line: %q", n, out.String())
				}
				var r IOBenchResult
				if err := json.Unmarshal(out.Bytes(), &r); err != nil {
					t.Fatal(err)
				}
				if r.Mode != st.mode || r.Direct != direct || r.BS != st.bs || r.Ops != st.wantOps || r.Bytes != st.wantBytes {
					t.Errorf("result %+v: want mode %s direct %t bs %d, %d ops, %d bytes", r, st.mode, direct, st.bs, st.wantOps, st.wantBytes)
				}
				if r.Seconds <= 0 || r.IOPS <= 0 || r.MBps <= 0 || r.P50us <= 0 || r.P99us < r.P50us || r.MaxUs < r.P99us {
					t.Errorf("result %+v: want positive time and rates, 0 < p50 <= p99 <= max", r)
				}
				if mean := r.Seconds * 1e6 / float64(r.Ops); r.MeanUs < mean*0.999 || r.MeanUs > mean*1.001 {
					t.Errorf("mean %.1f µs, but %d ops in %.6fs", r.MeanUs, r.Ops, r.Seconds)
				}
				if got := float64(r.Ops) / r.Seconds; got/r.IOPS < 0.999 || got/r.IOPS > 1.001 {
					t.Errorf("iops %.1f, but %d ops in %.6fs", r.IOPS, r.Ops, r.Seconds)
				}
				if fi, err := os.Stat(file); err != nil || fi.Size() != size {
					t.Errorf("the file after %s: %v, %v; want %d bytes", st.mode, fi, err, size)
				}
			})
		}
	}
}

// A timed random run (--count 0) stops after --duration.
func TestRunIOBenchDuration(t *testing.T) {
	file := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(file, make([]byte, 64<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := RunIOBench(IOBench{File: file, Mode: IORandRead, Size: 64 << 10, BS: 4096, Duration: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if r.Ops == 0 || r.Seconds < 0.1 || r.Seconds > 5 {
		t.Errorf("timed run: %d ops in %.3fs, want some ops in about 0.1s", r.Ops, r.Seconds)
	}
}

func TestRunIOBenchErrors(t *testing.T) {
	dir := t.TempDir()
	small := filepath.Join(dir, "small")
	if err := os.WriteFile(small, []byte("abc"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		b    IOBench
		want string
	}{
		{"random read of a missing file", IOBench{File: filepath.Join(dir, "none"), Mode: IORandRead, Size: 1 << 20, BS: 4096, Count: 1}, "--file"},
		{"random read of a file under a block", IOBench{File: small, Mode: IORandRead, Size: 1 << 20, BS: 4096, Count: 1}, "less than one block"},
		{"bad mode", IOBench{File: small, Mode: "x", Size: 1 << 20, BS: 4096}, "--mode"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := RunIOBench(tc.b); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("RunIOBench(%+v) = %v, want an error about %q", tc.b, err, tc.want)
			}
		})
	}
}

func TestPercentile(t *testing.T) {
	ms := func(xs ...int) []time.Duration {
		out := make([]time.Duration, len(xs))
		for i, x := range xs {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	for _, tc := range []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"one value", ms(5), 99, 5 * time.Millisecond},
		{"median of four", ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{"p99 of 100", ms(hundred...), 99, 99 * time.Millisecond},
		{"p50 of 100", ms(hundred...), 50, 50 * time.Millisecond},
		{"p99 of 10 is the max", ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 99, 10 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := percentile(tc.sorted, tc.p); got != tc.want {
				t.Errorf("percentile(p%.0f) = %s, want %s", tc.p, got, tc.want)
			}
		})
	}
}
