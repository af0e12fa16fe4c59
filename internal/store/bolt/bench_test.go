package bolt

import (
	"context"
	"fmt"
	"testing"

	"vgrid/internal/store"
)

var benchValue = make([]byte, 1024) // about the size of a workspace object

func BenchmarkCreate(b *testing.B) {
	s := openAt(b, b.TempDir())
	defer s.Close()
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := s.Create(ctx, fmt.Sprintf("bench/%09d", i), benchValue); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkGet(b *testing.B) {
	s := openAt(b, b.TempDir())
	defer s.Close()
	ctx := context.Background()
	const keys = 1000
	for i := range keys {
		if _, err := s.Create(ctx, fmt.Sprintf("bench/%09d", i), benchValue); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := s.Get(ctx, fmt.Sprintf("bench/%09d", i%keys)); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

func BenchmarkUpdateCAS(b *testing.B) {
	s := openAt(b, b.TempDir())
	defer s.Close()
	ctx := context.Background()
	rev, err := s.Create(ctx, "bench/cas", benchValue)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if rev, err = s.Update(ctx, "bench/cas", benchValue, rev); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkListPage100Of5000 reads one page of 100 keys from the middle of
// a prefix of 5,000.
func BenchmarkListPage100Of5000(b *testing.B) {
	s := openAt(b, b.TempDir())
	defer s.Close()
	ctx := context.Background()
	const keys, batch = 5000, 100
	for i := 0; i < keys; i += batch {
		ops := make([]store.Op, batch)
		for j := range ops {
			ops[j] = store.Op{Key: fmt.Sprintf("bench/%09d", i+j), Value: benchValue}
		}
		if _, err := s.Txn(ctx, ops); err != nil {
			b.Fatal(err)
		}
	}
	after := fmt.Sprintf("bench/%09d", keys/2)
	b.ReportAllocs()
	for b.Loop() {
		kvs, more, err := s.ListPage(ctx, "bench/", after, 100)
		if err != nil || len(kvs) != 100 || !more {
			b.Fatalf("ListPage: got %d keys, more %v, error %v; want 100, true, none", len(kvs), more, err)
		}
	}
}

// BenchmarkTxn10 commits Txns of 10 puts of new keys.
func BenchmarkTxn10(b *testing.B) {
	s := openAt(b, b.TempDir())
	defer s.Close()
	ctx := context.Background()
	ops := make([]store.Op, 10)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		for j := range ops {
			ops[j] = store.Op{Key: fmt.Sprintf("bench/%09d/%d", i, j), Value: benchValue}
		}
		if _, err := s.Txn(ctx, ops); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
