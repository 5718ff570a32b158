package memo

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The benchmarks behind `make bench` (scripts/bench.sh runs
// scripts/bench-memo, which adds peak memory and the xmllint floor). These
// split the pipeline into its stages for profiling:
//
//	go test -run '^$' -bench . -benchmem ./memo

// benchNow judges the official example, whose doNotDeliverUntilDate is
// 2018-09-15.
var benchNow = time.Date(2018, 6, 1, 12, 0, 0, 0, time.UTC)

// fullExample is the official MeMo 1.1 full example with its entry points
// moved to https, so that it passes the business rules too.
func fullExample(b *testing.B) []byte {
	doc, err := os.ReadFile(filepath.Join("testdata", "samples", "v1.1", "MeMo_Full_Example.xml"))
	if err != nil {
		b.Fatal(err)
	}
	return bytes.ReplaceAll(doc, []byte("<memo:url>http://"), []byte("<memo:url>https://"))
}

func BenchmarkFullExampleSchema(b *testing.B) {
	v := newTestValidator(b)
	doc := fullExample(b)
	b.SetBytes(int64(len(doc)))
	for b.Loop() {
		if _, err := v.ValidateSchemaBytes(doc); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFullExampleParseAndRules(b *testing.B) {
	doc := fullExample(b)
	cfg := DefaultConfig()
	b.SetBytes(int64(len(doc)))
	for b.Loop() {
		m, err := ParseBytes(doc)
		if err != nil {
			b.Fatal(err)
		}
		if errs := m.Check(cfg, benchNow); len(errs) > 0 {
			b.Fatal(errs)
		}
	}
}

// BenchmarkFullExampleRecordedParse is the Go side of ValidateBytes for
// a valid letter: the model read along libxml2's element records (made
// once, outside the loop), without the rules.
func BenchmarkFullExampleRecordedParse(b *testing.B) {
	v := newTestValidator(b)
	doc := fullExample(b)
	var recs []byte
	if _, err := v.validateSchemaBytes(doc, func(r []byte) { recs = bytes.Clone(r) }); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(doc)))
	for b.Loop() {
		if _, err := followRecords(doc, recs); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFullExamplePipeline(b *testing.B) {
	v := newTestValidator(b)
	doc := fullExample(b)
	b.SetBytes(int64(len(doc)))
	for b.Loop() {
		if _, err := v.ValidateBytes(doc, benchNow); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFullExamplePipelineTwoParse is the pipeline as it was before
// one parse per letter (libxml2 builds and validates a tree, then
// ParseBytes reads the bytes again): the baseline for
// BenchmarkFullExamplePipeline.
func BenchmarkFullExamplePipelineTwoParse(b *testing.B) {
	v := newTestValidator(b)
	doc := fullExample(b)
	b.SetBytes(int64(len(doc)))
	for b.Loop() {
		if _, err := v.validateBytesTwoParse(doc, benchNow); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFullExamplePipelineParallel(b *testing.B) {
	v := newTestValidator(b)
	doc := fullExample(b)
	b.SetBytes(int64(len(doc)))
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := v.ValidateBytes(doc, benchNow); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkBigFilePipeline(b *testing.B) {
	if testing.Short() {
		b.Skip("writes a 99 MiB file")
	}
	v := newTestValidator(b)
	path := bigMessage(b, b.TempDir(), 99<<20)
	st, _ := os.Stat(path)
	b.SetBytes(st.Size())
	for b.Loop() {
		if _, err := v.ValidateFile(path, benchNow); err != nil {
			b.Fatal(err)
		}
	}
}
