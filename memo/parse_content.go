package memo

import (
	"bytes"
	"encoding/base64"
	"io"
	"os"

	"github.com/posthub/posthub/hub"
)

// content is where a File's bytes live. Exactly one of the sources is set:
//   - segs: base64 text as byte ranges of a document (a file named by path,
//     or the slice src), with the few pieces that came from character
//     references or were split by comments held inline; decoded on Open.
//   - data: the decoded bytes in memory.
//   - open: a caller's source of the decoded bytes (builder).
type content struct {
	path string
	src  []byte
	segs []segment

	data    []byte
	hasData bool

	open func() (io.ReadCloser, error)

	encoded int64 // base64 characters, whitespace excluded
	decoded int64 // -1 when unknown
}

// segment is a piece of base64 text: n bytes at off, or inline.
type segment struct {
	off, n int64
	inline []byte
}

// SetContent makes data (the decoded bytes) the file's content.
func (f *File) SetContent(data []byte) {
	f.content = content{data: data, hasData: true, encoded: int64(base64.StdEncoding.EncodedLen(len(data))), decoded: int64(len(data))}
}

// SetContentFunc makes open the source of the file's decoded content; size is
// its length in bytes (-1 if unknown; then EncodedSize and DecodedSize report
// -1). open is called once per Open or WriteTo.
func (f *File) SetContentFunc(open func() (io.ReadCloser, error), size int64) {
	enc := int64(-1)
	if size >= 0 {
		enc = (size + 2) / 3 * 4
	}
	f.content = content{open: open, encoded: enc, decoded: size}
}

// SetContentReader makes r the source of the file's decoded content. It can
// be read once: a second Open or WriteTo fails.
func (f *File) SetContentReader(r io.Reader, size int64) {
	used := false
	f.SetContentFunc(func() (io.ReadCloser, error) {
		if used {
			return nil, hub.Errorf(hub.Internal, "memo: file %q: content reader already consumed", f.Filename)
		}
		used = true
		return io.NopCloser(r), nil
	}, size)
}

// EncodedSize is the number of base64 characters of the content (whitespace
// not counted), or -1 if unknown.
func (f *File) EncodedSize() int64 { return f.content.encoded }

// DecodedSize is the length of the decoded content in bytes, or -1 if unknown.
func (f *File) DecodedSize() int64 { return f.content.decoded }

// Open returns the decoded content as a stream. The caller closes it. For a
// message from ParseFile the file must still exist unchanged.
func (f *File) Open() (io.ReadCloser, error) {
	c := &f.content
	switch {
	case c.hasData:
		return io.NopCloser(bytes.NewReader(c.data)), nil
	case c.open != nil:
		return c.open()
	case c.segs == nil && c.path == "" && c.src == nil:
		return io.NopCloser(bytes.NewReader(nil)), nil
	}
	rc, err := f.openBase64()
	if err != nil {
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{base64.NewDecoder(base64.StdEncoding, rc), rc}, nil
}

// openBase64 streams the base64 text of a segment-backed content with all
// whitespace removed.
func (f *File) openBase64() (io.ReadCloser, error) {
	c := &f.content
	var ra io.ReaderAt
	var closer io.Closer = io.NopCloser(nil)
	if c.path != "" {
		fh, err := os.Open(c.path)
		if err != nil {
			return nil, hub.Wrap(hub.Internal, err, "memo: open content of %q", f.Filename)
		}
		ra, closer = fh, fh
	} else {
		ra = bytes.NewReader(c.src)
	}
	rs := make([]io.Reader, 0, len(c.segs))
	for _, s := range c.segs {
		if s.inline != nil {
			rs = append(rs, bytes.NewReader(s.inline))
		} else {
			rs = append(rs, io.NewSectionReader(ra, s.off, s.n))
		}
	}
	return struct {
		io.Reader
		io.Closer
	}{&wsFilter{r: io.MultiReader(rs...)}, closer}, nil
}

// wsFilter drops XML whitespace from a stream of base64 text.
type wsFilter struct{ r io.Reader }

func (w *wsFilter) Read(p []byte) (int, error) {
	for {
		n, err := w.r.Read(p)
		k := stripWS(p[:n])
		if k > 0 || err != nil {
			return k, err
		}
	}
}

// stripWS removes space, tab, CR and LF from b in place and returns the new length.
func stripWS(b []byte) int {
	i := 0
	for i < len(b) && !isWS(b[i]) {
		i++
	}
	j := i
	for ; i < len(b); i++ {
		if c := b[i]; !isWS(c) {
			b[j] = c
			j++
		}
	}
	return j
}

func isWS(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// countWS counts XML whitespace bytes in b with the vectorised bytes.Count.
func countWS(b []byte) int {
	return bytes.Count(b, []byte{'\n'}) + bytes.Count(b, []byte{' '}) +
		bytes.Count(b, []byte{'\r'}) + bytes.Count(b, []byte{'\t'})
}

// base64Sink collects a content element's text. In reference mode (file or
// slice input) it records segments; in decode mode (stream input) it decodes
// into memory as the text streams by. Either way it counts base64 characters
// and trailing padding so the decoded size is known without decoding.
type base64Sink struct {
	decode bool
	segs   []segment
	n      int64   // non-whitespace characters
	tail   [2]byte // last two non-whitespace characters
	quad   [4]byte // decode mode: pending characters
	nq     int
	out    []byte
	err    error
}

func (s *base64Sink) raw(b []byte, off int64) {
	s.account(b)
	if s.decode {
		s.decodeChunk(b)
		return
	}
	if k := len(s.segs); k > 0 && s.segs[k-1].inline == nil && s.segs[k-1].off+s.segs[k-1].n == off {
		s.segs[k-1].n += int64(len(b))
		return
	}
	s.segs = append(s.segs, segment{off: off, n: int64(len(b))})
}

func (s *base64Sink) char(b []byte) {
	s.account(b)
	if s.decode {
		s.decodeChunk(b)
		return
	}
	s.segs = append(s.segs, segment{inline: append([]byte(nil), b...)})
}

func (s *base64Sink) account(b []byte) {
	s.n += int64(len(b) - countWS(b))
	for i := len(b) - 1; i >= 0; i-- {
		if c := b[i]; !isWS(c) {
			s.tail[0], s.tail[1] = s.tail[1], c
			// one more from further back, if any
			for j := i - 1; j >= 0; j-- {
				if d := b[j]; !isWS(d) {
					s.tail[0] = d
					break
				}
			}
			break
		}
	}
}

func (s *base64Sink) decodeChunk(b []byte) {
	if s.err != nil {
		return
	}
	if s.out == nil {
		s.out = make([]byte, 0, 512)
	}
	for len(b) > 0 {
		// fast path: whole quads without whitespace
		if s.nq == 0 && len(b) >= 4 {
			k := len(b) / 4 * 4
			if i := bytes.IndexAny(b[:k], " \t\r\n"); i >= 0 {
				k = i / 4 * 4
			}
			if k > 0 {
				dst := growTo(&s.out, base64.StdEncoding.DecodedLen(k))
				n, err := base64.StdEncoding.Decode(dst, b[:k])
				if err != nil {
					s.err = err
					return
				}
				s.out = s.out[:len(s.out)+n]
				b = b[k:]
				continue
			}
		}
		c := b[0]
		b = b[1:]
		if isWS(c) {
			continue
		}
		s.quad[s.nq] = c
		s.nq++
		if s.nq == 4 {
			s.nq = 0
			var dst [3]byte
			n, err := base64.StdEncoding.Decode(dst[:], s.quad[:])
			if err != nil {
				s.err = err
				return
			}
			s.out = append(s.out, dst[:n]...)
		}
	}
}

// growTo extends *b's capacity so n more bytes fit and returns that room.
func growTo(b *[]byte, n int) []byte {
	s := *b
	if cap(s)-len(s) < n {
		ns := make([]byte, len(s), 2*cap(s)+n)
		copy(ns, s)
		s = ns
		*b = s
	}
	return s[len(s) : len(s)+n]
}

// decodedSize computes the decoded length from the character count and padding.
func (s *base64Sink) decodedSize() int64 {
	if s.n%4 != 0 {
		return s.n / 4 * 3 // not canonical base64; Open will report the error
	}
	pad := int64(0)
	if s.tail[1] == '=' {
		pad++
		if s.tail[0] == '=' {
			pad++
		}
	}
	if s.n == 0 {
		return 0
	}
	return s.n/4*3 - pad
}
