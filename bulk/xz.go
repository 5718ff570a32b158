package bulk

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"hash/crc64"
	"io"

	"github.com/ulikunitz/xz/lzma"
)

// The xz container (https://tukaani.org/xz/xz-file-format.txt) is decoded
// here, with the LZMA2 decoder of github.com/ulikunitz/xz/lzma, because
// that module's xz reader allocates whatever dictionary a block header
// asks for (up to 4 GiB), with no cap to configure. This reader checks
// each block's dictionary against the limit before the decoder exists.
//
// It reads what xz(1) writes: one or more streams (with stream padding
// between them), each a sequence of blocks with the single filter LZMA2
// and the check None, CRC32, CRC64 or SHA-256, then an index and a
// footer. Checks, header CRCs, the index and the footer are verified; a
// block whose header declares its sizes must have them.

var xzMagic = []byte{0xFD, '7', 'z', 'X', 'Z', 0}

type xzReader struct {
	br      *bufio.Reader
	maxDict int64
	flags   [2]byte // stream flags of the current stream
	check   func() hash.Hash
	// The block being decoded (block nil: between blocks).
	block          io.Reader
	data           *byteCounter // the block's compressed data
	sum            hash.Hash
	headerLen      int64
	wantCompressed int64 // -1 when the header does not say
	wantSize       int64
	size           int64 // uncompressed bytes of the block so far
	// The stream's blocks, to check its index against.
	blocks, unpadded, uncompressed int64
	eof                            bool
}

func newXZReader(br *bufio.Reader, maxDict int64) (*xzReader, error) {
	x := &xzReader{br: br, maxDict: maxDict}
	if err := x.streamHeader(); err != nil {
		return nil, err
	}
	return x, nil
}

func xzError(format string, args ...any) error {
	return malformed("", "the xz stream is not valid: "+fmt.Sprintf(format, args...), nil)
}

func (x *xzReader) Read(p []byte) (int, error) {
	for {
		if x.eof {
			return 0, io.EOF
		}
		if x.block == nil {
			if err := x.next(); err != nil {
				return 0, err
			}
			continue
		}
		n, err := x.block.Read(p)
		x.sum.Write(p[:n])
		x.size += int64(n)
		if x.wantSize >= 0 && x.size > x.wantSize {
			return n, xzError("a block is larger than its header says")
		}
		if err == io.EOF {
			err = x.endBlock()
		}
		if n > 0 || err != nil {
			return n, err
		}
	}
}

// streamHeader reads the 12-byte stream header.
func (x *xzReader) streamHeader() error {
	var h [12]byte
	if _, err := io.ReadFull(x.br, h[:]); err != nil {
		return xzError("it ends within a stream header")
	}
	if !bytes.Equal(h[:6], xzMagic) {
		return xzError("no stream header")
	}
	if crc32.ChecksumIEEE(h[6:8]) != binary.LittleEndian.Uint32(h[8:12]) {
		return xzError("the stream header's CRC32 does not match")
	}
	if h[6] != 0 || h[7]&0xF0 != 0 {
		return xzError("unsupported stream flags %#x %#x", h[6], h[7])
	}
	switch h[7] {
	case 0x00:
		x.check = nil
	case 0x01:
		x.check = func() hash.Hash { return crc32.NewIEEE() }
	case 0x04:
		x.check = func() hash.Hash { return crc64.New(crc64.MakeTable(crc64.ECMA)) }
	case 0x0A:
		x.check = sha256.New
	default:
		return xzError("unsupported check type %#x (None, CRC32, CRC64 or SHA-256)", h[7])
	}
	x.flags = [2]byte{h[6], h[7]}
	x.blocks, x.unpadded, x.uncompressed = 0, 0, 0
	return nil
}

// next reads the next block header, or the index, footer and what follows.
func (x *xzReader) next() error {
	size, err := x.br.ReadByte()
	if err != nil {
		return xzError("it ends where a block or the index begins")
	}
	if size == 0 {
		return x.indexAndFooter()
	}
	hdr := make([]byte, 4*(int(size)+1))
	hdr[0] = size
	if _, err := io.ReadFull(x.br, hdr[1:]); err != nil {
		return xzError("it ends within a block header")
	}
	body, crc := hdr[:len(hdr)-4], binary.LittleEndian.Uint32(hdr[len(hdr)-4:])
	if crc32.ChecksumIEEE(body) != crc {
		return xzError("a block header's CRC32 does not match")
	}
	r := bytes.NewReader(body[2:])
	flags := body[1]
	if flags&0x3C != 0 {
		return xzError("a block header has reserved flags set")
	}
	if flags&0x03 != 0 {
		return xzError("a block uses %d filters; only LZMA2 alone is supported", flags&0x03+1)
	}
	x.wantCompressed, x.wantSize = -1, -1
	if flags&0x40 != 0 {
		v, err := readVLI(r)
		if err != nil || v == 0 {
			return xzError("a block header's compressed size is invalid")
		}
		x.wantCompressed = int64(v)
	}
	if flags&0x80 != 0 {
		v, err := readVLI(r)
		if err != nil {
			return xzError("a block header's uncompressed size is invalid")
		}
		x.wantSize = int64(v)
	}
	id, err1 := readVLI(r)
	propsLen, err2 := readVLI(r)
	if err1 != nil || err2 != nil {
		return xzError("a block header's filter flags are invalid")
	}
	if id != 0x21 || propsLen != 1 {
		return xzError("a block uses filter %#x; only LZMA2 (0x21) is supported", id)
	}
	prop, err := r.ReadByte()
	if err != nil {
		return xzError("a block header ends within its filter properties")
	}
	for r.Len() > 0 {
		if b, _ := r.ReadByte(); b != 0 {
			return xzError("a block header's padding is not zero")
		}
	}
	dict, err := lzma.DecodeDictCap(prop)
	if err != nil {
		return xzError("a block's dictionary size is invalid")
	}
	if dict > x.maxDict {
		return dictionaryTooLarge(dict, x.maxDict)
	}
	x.data = &byteCounter{r: x.br}
	x.block, err = lzma.Reader2Config{DictCap: int(max(dict, lzma.MinDictCap))}.NewReader2(x.data)
	if err != nil {
		return xzError("%v", err)
	}
	x.sum = nopHash{}
	if x.check != nil {
		x.sum = x.check()
	}
	x.headerLen, x.size = int64(len(hdr)), 0
	return nil
}

// endBlock reads the block's padding and check once its data ended.
func (x *xzReader) endBlock() error {
	compressed := x.data.n
	if (x.wantCompressed >= 0 && compressed != x.wantCompressed) || (x.wantSize >= 0 && x.size != x.wantSize) {
		return xzError("a block's sizes differ from its header's")
	}
	pad := make([]byte, (4-compressed%4)%4)
	if _, err := io.ReadFull(x.br, pad); err != nil || !allZero(pad) {
		return xzError("a block's padding is missing or not zero")
	}
	want := make([]byte, x.sum.Size())
	if _, err := io.ReadFull(x.br, want); err != nil {
		return xzError("it ends within a block's check")
	}
	if !bytes.Equal(checkSum(x.sum), want) {
		return xzError("a block's check does not match: the archive is corrupt")
	}
	x.blocks++
	x.unpadded += x.headerLen + compressed + int64(len(want))
	x.uncompressed += x.size
	x.block = nil
	return nil
}

// checkSum is a block's check as xz stores it: CRC32 and CRC64
// little-endian (Go's hashes sum them big-endian), SHA-256 as it is.
func checkSum(h hash.Hash) []byte {
	switch h := h.(type) {
	case hash.Hash32:
		return binary.LittleEndian.AppendUint32(nil, h.Sum32())
	case hash.Hash64:
		return binary.LittleEndian.AppendUint64(nil, h.Sum64())
	}
	return h.Sum(nil)
}

// indexAndFooter reads the index (its indicator byte was read), the stream
// footer and the stream padding, then the next stream's header or EOF.
func (x *xzReader) indexAndFooter() error {
	crc := crc32.NewIEEE()
	crc.Write([]byte{0})
	r := &crcByteReader{r: x.br, crc: crc}
	n, err := readVLI(r)
	if err != nil || int64(n) != x.blocks {
		return xzError("the index does not list the stream's blocks")
	}
	var unpadded, uncompressed int64
	for i := uint64(0); i < n; i++ {
		u, err1 := readVLI(r)
		s, err2 := readVLI(r)
		if err1 != nil || err2 != nil {
			return xzError("an index record is invalid")
		}
		unpadded += int64(u)
		uncompressed += int64(s)
	}
	if unpadded != x.unpadded || uncompressed != x.uncompressed {
		return xzError("the index does not match the stream's blocks")
	}
	for r.n%4 != 3 { // indicator byte + records + padding is a multiple of 4
		if b, err := r.ReadByte(); err != nil || b != 0 {
			return xzError("the index padding is missing or not zero")
		}
	}
	indexSize := r.n + 1 + 4
	var tail [16]byte // index CRC32, then the 12-byte footer
	if _, err := io.ReadFull(x.br, tail[:]); err != nil {
		return xzError("it ends within the index or stream footer")
	}
	if binary.LittleEndian.Uint32(tail[0:4]) != crc.Sum32() {
		return xzError("the index CRC32 does not match")
	}
	f := tail[4:]
	if crc32.ChecksumIEEE(f[4:10]) != binary.LittleEndian.Uint32(f[0:4]) || f[10] != 'Y' || f[11] != 'Z' {
		return xzError("the stream footer is invalid")
	}
	if f[8] != x.flags[0] || f[9] != x.flags[1] || (int64(binary.LittleEndian.Uint32(f[4:8]))+1)*4 != indexSize {
		return xzError("the stream footer does not match its header or index")
	}
	// Stream padding (multiples of four zero bytes), then EOF or another stream.
	for {
		b, err := x.br.Peek(4)
		if len(b) == 0 && err == io.EOF {
			x.eof = true
			return nil
		}
		if len(b) == 4 && allZero(b) {
			_, _ = x.br.Discard(4)
			continue
		}
		return x.streamHeader()
	}
}

// readVLI reads xz's variable-length integer: 7 bits a byte, at most 9
// bytes, no needless trailing zero byte.
func readVLI(r io.ByteReader) (uint64, error) {
	var v uint64
	for i := 0; i < 9; i++ {
		b, err := r.ReadByte()
		if err != nil {
			return 0, err
		}
		v |= uint64(b&0x7F) << (7 * i)
		if b&0x80 == 0 {
			if i > 0 && b == 0 {
				return 0, errors.New("xz: VLI with a needless zero byte")
			}
			return v, nil
		}
	}
	return 0, errors.New("xz: VLI longer than 9 bytes")
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// byteCounter counts the compressed bytes the LZMA2 decoder reads, which
// it reads exactly, so that the block padding after them can be found.
type byteCounter struct {
	r *bufio.Reader
	n int64
}

func (c *byteCounter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func (c *byteCounter) ReadByte() (byte, error) {
	b, err := c.r.ReadByte()
	if err == nil {
		c.n++
	}
	return b, err
}

// crcByteReader reads bytes into a CRC32 and counts them.
type crcByteReader struct {
	r   *bufio.Reader
	crc hash.Hash32
	n   int64
}

func (c *crcByteReader) ReadByte() (byte, error) {
	b, err := c.r.ReadByte()
	if err == nil {
		c.crc.Write([]byte{b})
		c.n++
	}
	return b, err
}

// nopHash is the check None.
type nopHash struct{}

func (nopHash) Write(p []byte) (int, error) { return len(p), nil }
func (nopHash) Sum(b []byte) []byte         { return b }
func (nopHash) Reset()                      {}
func (nopHash) Size() int                   { return 0 }
func (nopHash) BlockSize() int              { return 1 }
