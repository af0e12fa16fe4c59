package transfer

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// BenchmarkFetch fetches a 256 MiB random file over loopback TLS (the
// source's sum cached), into a fresh staging directory each time.
func BenchmarkFetch(b *testing.B) {
	dir := b.TempDir()
	path := filepath.Join(dir, "memory.bin")
	const size = 256 << 20
	writeRandom(b, path, size)
	src := startSource(b, []File{{Name: "memory.bin", Path: path}}, sourceOpts{})
	o := clientOpts(src, filepath.Join(dir, "warm"))
	if _, err := Fetch(fetchCtx(b), o); err != nil { // hashes on the source
		b.Fatal(err)
	}
	b.SetBytes(size)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		os.RemoveAll(o.Dir)
		o.Dir = filepath.Join(dir, "run"+strconv.Itoa(i))
		b.StartTimer()
		if _, err := Fetch(fetchCtx(b), o); err != nil {
			b.Fatal(err)
		}
	}
}
