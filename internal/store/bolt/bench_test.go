package bolt

import (
	"context"
	"fmt"
	"testing"
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
