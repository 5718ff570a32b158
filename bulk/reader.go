// Package bulk reads a mass-send archive: a tar archive compressed with
// lzma ("LZMA alone", as NgDP specifies) or xz, whose regular files are
// MeMos.
//
// An archive is input that expands: a 79-byte lzma header can ask for a
// 2 GiB dictionary, 177 KB can decompress to 1.2 GB of one entry, and 5 MB
// can hold 100,000 entries. A Reader holds every archive to its Limits and
// checks each bound at the first byte that can tell, so that no bound is
// found out by doing the work it is there to prevent:
//
//   - Before decompressing: the dictionary an lzma header asks for (refused
//     before it is allocated; the lzma library's own cap is 2 GiB) and the
//     uncompressed size the header declares, when it declares one. An xz
//     stream is decoded by this package's own container reader (xz.go), so
//     that each block's LZMA2 dictionary is checked the same way.
//   - At each tar header, before the entry's content is read: the number of
//     entries, the entry's declared size (the MeMo size limit) and whether
//     the content fits in what is left of the decompressed budget. An entry
//     that fails one is not skipped, since skipping it means decompressing
//     it: reading stops at its header.
//   - While reading: compressed bytes and decompressed bytes (tar headers,
//     padding and trailer included) are counted against their bounds.
//
// A bound crossed is a *hub.Error of code TooLarge, a broken archive one of
// code Invalid, each with one field error whose code names the rule (see
// the Code* constants); Pos says where reading stopped. Entries returned
// before the error stay valid; what becomes of them is the caller's choice
// (the API has given each its own receipt already).
package bulk

import (
	"archive/tar"
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"

	"github.com/ulikunitz/xz/lzma"

	"github.com/posthub/posthub/hub"
)

// The field-error codes of a refused archive.
const (
	CodeTooLarge             = "archive.too.large"              // compressed bytes over Limits.MaxCompressed
	CodeDictionaryTooLarge   = "archive.dictionary.too.large"   // an lzma/LZMA2 dictionary over Limits.MaxDictionary
	CodeDecompressedTooLarge = "archive.decompressed.too.large" // decompressed bytes over Limits.MaxBytes
	CodeEntryTooLarge        = "archive.entry.too.large"        // an entry over Limits.MaxEntrySize
	CodeTooManyEntries       = "archive.entries.too.many"       // more regular files than Limits.MaxEntries
	CodeMalformed            = "archive.malformed"              // not an lzma/xz-compressed tar archive
)

// Limits bound one archive. Zero fields take the Default* values.
type Limits struct {
	// MaxCompressed is the largest archive as sent, in bytes.
	MaxCompressed int64
	// MaxDictionary is the largest dictionary an lzma header or xz block
	// may ask for; the decoder allocates it whole.
	MaxDictionary int64
	// MaxBytes is the most the archive may decompress to, tar structure
	// included.
	MaxBytes int64
	// MaxEntrySize is the largest entry (the hub's MeMo size limit).
	MaxEntrySize int64
	// MaxEntries is the most regular files (MeMos) in one archive.
	MaxEntries int
}

// Defaults. A 64 MiB dictionary is what `xz -9` and `lzma -9` use; 1 GiB
// decompressed is about 40 s of the pure-Go lzma decoder's CPU.
const (
	DefaultMaxCompressed int64 = 1 << 30
	DefaultMaxDictionary int64 = 64 << 20
	DefaultMaxBytes      int64 = 1 << 30
	DefaultMaxEntrySize  int64 = 104_333_312 // memo.DefaultMaxSize
	DefaultMaxEntries          = 10_000
)

func (l Limits) withDefaults() Limits {
	if l.MaxCompressed <= 0 {
		l.MaxCompressed = DefaultMaxCompressed
	}
	if l.MaxDictionary <= 0 {
		l.MaxDictionary = DefaultMaxDictionary
	}
	l.MaxDictionary = min(max(l.MaxDictionary, lzma.MinDictCap), lzma.MaxDictCap)
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	if l.MaxEntrySize <= 0 {
		l.MaxEntrySize = DefaultMaxEntrySize
	}
	if l.MaxEntries <= 0 {
		l.MaxEntries = DefaultMaxEntries
	}
	return l
}

// Position is where a Reader stands: at entry Entry (1-based, counting
// regular files; the ones before it were read whole), named Name once its
// header was read, after Offset decompressed bytes. After an error it is
// where reading stopped: the entry whose header crossed a bound or whose
// header or content broke.
type Position struct {
	Entry  int    `json:"entry"`
	Name   string `json:"name,omitempty"`
	Offset int64  `json:"offset"`
}

// Entry is a regular file of the archive; read its content from the Reader.
type Entry struct {
	Name string
	Size int64
}

// Reader reads the entries of an archive within its Limits.
type Reader struct {
	limits Limits
	out    *counter // decompressed bytes
	tr     *tar.Reader
	read   int      // regular files returned by Next
	pos    Position // where it stands
	err    error    // sticky: the archive broke or a bound was crossed
}

// NewReader reads the compression header of the archive r and refuses it
// when its dictionary or declared size is over the limits.
func NewReader(r io.Reader, l Limits) (*Reader, error) {
	l = l.withDefaults()
	ar := &Reader{limits: l, pos: Position{Entry: 1}}
	in := &counter{r: r, max: l.MaxCompressed, over: func() error { return compressedTooLarge(l.MaxCompressed) }}
	br := bufio.NewReaderSize(in, 64<<10)
	zr, err := decompressor(br, l)
	if err != nil {
		return nil, ar.fail(err)
	}
	ar.out = &counter{r: zr, max: l.MaxBytes, over: func() error { return ar.decompressedTooLarge("") }}
	ar.tr = tar.NewReader(ar.out)
	return ar, nil
}

// decompressor checks the lzma header, or starts the bounded xz reader.
func decompressor(br *bufio.Reader, l Limits) (io.Reader, error) {
	if magic, _ := br.Peek(len(xzMagic)); bytes.Equal(magic, xzMagic) {
		return newXZReader(br, l.MaxDictionary)
	}
	h, err := br.Peek(lzma.HeaderLen)
	if err != nil {
		return nil, malformed("", "the body is not lzma/xz-compressed: it ends within the 13-byte lzma header", err)
	}
	if h[0] >= 9*5*5 {
		return nil, malformed("", "the body is not lzma/xz-compressed: invalid lzma properties byte", nil)
	}
	if dict := int64(binary.LittleEndian.Uint32(h[1:5])); dict > l.MaxDictionary {
		if !encoderDict(dict) {
			return nil, malformed("", fmt.Sprintf("the body is not lzma/xz-compressed: read as an lzma header, it would ask "+
				"for a dictionary of %d bytes, not a size an encoder writes", dict), nil)
		}
		return nil, dictionaryTooLarge(dict, l.MaxDictionary)
	}
	if size := binary.LittleEndian.Uint64(h[5:13]); size != 1<<64-1 && size > uint64(l.MaxBytes) {
		return nil, tooLarge(CodeDecompressedTooLarge, "lzma header/uncompressedSize",
			fmt.Sprintf("the lzma header declares %d decompressed bytes; an archive may decompress to at most %d", size, l.MaxBytes),
			strconv.FormatUint(size, 10))
	}
	zr, err := lzma.ReaderConfig{DictCap: int(l.MaxDictionary)}.NewReader(br)
	if err != nil {
		return nil, malformed("", "the body is not lzma/xz-compressed: "+err.Error(), err)
	}
	return zr, nil
}

// encoderDict reports whether a dictionary size over the bound is one an
// encoder writes (or a bomb copies): a multiple of 4 KiB (xz-utils writes
// 2^n or 2^n+2^(n-1), 7-Zip multiples of 1 MiB) or 2^n-1 (2^32-1, the
// largest; 2^31-1, the lzma library's cap). lzma has no magic number, so a
// body that is no lzma at all is read as a header too; its dictionary field
// is then almost never of this form, and it is called malformed rather than
// a dictionary too large.
func encoderDict(n int64) bool {
	return n%4096 == 0 || (n+1)&n == 0
}

// Next returns the next regular file, io.EOF after the last. Other entries
// (directories, links) are passed over. Its errors are sticky.
func (ar *Reader) Next() (*Entry, error) {
	if ar.err != nil {
		return nil, ar.err
	}
	ar.pos = Position{Entry: ar.read + 1, Offset: ar.out.n}
	for {
		hdr, err := ar.tr.Next()
		ar.pos.Offset = ar.out.n
		if err == io.EOF {
			return nil, io.EOF
		}
		if err != nil {
			return nil, ar.fail(err)
		}
		ar.pos.Name = hdr.Name
		// What is left of the budget must hold the entry's content: reading
		// past an entry that does not fit would decompress it all for nothing.
		overBudget := hdr.Size > ar.limits.MaxBytes-ar.out.n && !headerOnly(hdr.Typeflag)
		if hdr.Typeflag != tar.TypeReg {
			if overBudget {
				return nil, ar.fail(ar.decompressedTooLarge(hdr.Name))
			}
			continue
		}
		if ar.pos.Entry > ar.limits.MaxEntries {
			return nil, ar.fail(tooLarge(CodeTooManyEntries, hdr.Name,
				fmt.Sprintf("entry %d: an archive may hold at most %d MeMos; send the rest in another archive", ar.pos.Entry, ar.limits.MaxEntries),
				strconv.Itoa(ar.pos.Entry)))
		}
		if hdr.Size > ar.limits.MaxEntrySize {
			return nil, ar.fail(tooLarge(CodeEntryTooLarge, hdr.Name,
				fmt.Sprintf("entry %d is %d bytes; a MeMo may be at most %d bytes", ar.pos.Entry, hdr.Size, ar.limits.MaxEntrySize),
				strconv.FormatInt(hdr.Size, 10)))
		}
		if overBudget {
			return nil, ar.fail(ar.decompressedTooLarge(hdr.Name))
		}
		ar.read++
		return &Entry{Name: hdr.Name, Size: hdr.Size}, nil
	}
}

// headerOnly reports tar entry types without content (as archive/tar has them).
func headerOnly(flag byte) bool {
	switch flag {
	case tar.TypeLink, tar.TypeSymlink, tar.TypeChar, tar.TypeBlock, tar.TypeDir, tar.TypeFifo:
		return true
	}
	return false
}

// Read reads the content of the entry Next returned last. An error other
// than io.EOF means the archive broke (or a bound was crossed): it is
// sticky, and Err reports it too.
func (ar *Reader) Read(p []byte) (int, error) {
	if ar.err != nil {
		return 0, ar.err
	}
	n, err := ar.tr.Read(p)
	if err != nil && err != io.EOF {
		err = ar.fail(err)
	}
	return n, err
}

// Err is the error that stopped the archive, nil while it reads well.
func (ar *Reader) Err() error { return ar.err }

// Pos says where the reader stands; after an error, where it stopped.
func (ar *Reader) Pos() Position { return ar.pos }

// fail makes err the sticky error, as a *hub.Error that names where.
func (ar *Reader) fail(err error) error {
	var he *hub.Error
	if !errors.As(err, &he) {
		err = malformed(ar.pos.Name, "the archive is not a valid lzma/xz-compressed tar: "+err.Error(), err)
	}
	if ar.out != nil {
		ar.pos.Offset = ar.out.n
	}
	ar.err = err
	return err
}

func (ar *Reader) decompressedTooLarge(name string) error {
	return tooLarge(CodeDecompressedTooLarge, name,
		fmt.Sprintf("the archive decompresses to more than the hub accepts (%d bytes); send the rest in another archive", ar.limits.MaxBytes), "")
}

func dictionaryTooLarge(dict, max int64) error {
	return tooLarge(CodeDictionaryTooLarge, "dictionarySize",
		fmt.Sprintf("the archive's compression dictionary is %d bytes; the hub decompresses with at most %d (xz/lzma -9 use 64 MiB)", dict, max),
		strconv.FormatInt(dict, 10))
}

func tooLarge(code, field, msg, value string) error {
	return &hub.Error{Code: hub.TooLarge, Message: msg,
		Fields: []hub.FieldError{{Resource: "archive", Field: field, Code: code, Message: msg, RejectedValue: value}}}
}

func malformed(field, msg string, cause error) error {
	return &hub.Error{Code: hub.Invalid, Message: msg, Err: cause,
		Fields: []hub.FieldError{{Resource: "archive", Field: field, Code: CodeMalformed, Message: msg}}}
}

// counter counts the bytes read through it and fails with over() once
// more than max were read.
type counter struct {
	r    io.Reader
	n    int64
	max  int64
	over func() error
}

func (c *counter) Read(p []byte) (int, error) {
	if c.n > c.max {
		return 0, c.over()
	}
	if left := c.max - c.n + 1; int64(len(p)) > left {
		p = p[:left]
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.n > c.max {
		return n, c.over()
	}
	return n, err
}

// Admit refuses an archive whose declared length (a Content-Length, -1
// when unknown) is over MaxCompressed, before a byte of it is read.
func (l Limits) Admit(length int64) error {
	l = l.withDefaults()
	if length > l.MaxCompressed {
		return compressedTooLarge(l.MaxCompressed)
	}
	return nil
}

func compressedTooLarge(max int64) error {
	return tooLarge(CodeTooLarge, "", fmt.Sprintf("the archive is larger than the hub accepts (%d bytes)", max), "")
}
