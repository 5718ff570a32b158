package retrieval

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/memo"
)

// content opens m's MeMo in the version sys wants. The stored bytes are
// streamed unchanged when the versions agree (or the system names none).
// Conversion errors wrap errConversion.
func (s *Service) content(ctx context.Context, sys hub.System, m hub.Message) (io.ReadCloser, int64, string, error) {
	want := sys.MemoVersion
	if want == "" || m.MemoVersion == "" || want == m.MemoVersion {
		rc, err := hub.OpenContent(ctx, s.blobs, m)
		if err != nil {
			return nil, 0, "", err
		}
		return rc, m.Size, m.MemoVersion, nil
	}
	return s.convert(ctx, m, want)
}

// convert writes m converted to version want into a scratch file and
// returns it for reading; the file is removed on Close. Large contents are
// copied to a scratch file first so memo.ParseFile can refer to it instead
// of holding the attachments in memory.
func (s *Service) convert(ctx context.Context, m hub.Message, want string) (io.ReadCloser, int64, string, error) {
	var (
		mm  *memo.Message
		err error
	)
	if m.ContentKey == "" {
		mm, err = memo.ParseBytes(m.Content)
		if err != nil {
			return nil, 0, "", fmt.Errorf("%w: parse: %v", errConversion, err)
		}
	} else {
		src, err := s.scratchCopy(ctx, m)
		if err != nil {
			return nil, 0, "", err
		}
		defer os.Remove(src)
		mm, err = memo.ParseFile(src)
		if err != nil {
			return nil, 0, "", fmt.Errorf("%w: parse: %v", errConversion, err)
		}
	}
	out, err := os.CreateTemp(s.cfg.TempDir, "posthub-convert-*.xml")
	if err != nil {
		return nil, 0, "", hub.Wrap(hub.Internal, err, "scratch file for conversion")
	}
	fail := func(err error) (io.ReadCloser, int64, string, error) {
		out.Close()
		os.Remove(out.Name())
		return nil, 0, "", err
	}
	bw := bufio.NewWriterSize(out, 64<<10)
	losses, err := memo.ConvertTo(bw, mm, want)
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		return fail(fmt.Errorf("%w: %v", errConversion, err))
	}
	if len(losses) > 0 {
		s.log.Info("retrieval: converted with losses", "message", m.UUID, "from", m.MemoVersion, "to", want, "losses", len(losses))
	}
	size, err := out.Seek(0, io.SeekCurrent)
	if err != nil {
		return fail(hub.Wrap(hub.Internal, err, "scratch file"))
	}
	if _, err := out.Seek(0, io.SeekStart); err != nil {
		return fail(hub.Wrap(hub.Internal, err, "scratch file"))
	}
	return &scratchFile{out}, size, want, nil
}

func (s *Service) scratchCopy(ctx context.Context, m hub.Message) (string, error) {
	rc, err := hub.OpenContent(ctx, s.blobs, m)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	f, err := os.CreateTemp(s.cfg.TempDir, "posthub-source-*.xml")
	if err != nil {
		return "", hub.Wrap(hub.Internal, err, "scratch file for conversion")
	}
	if _, err := io.Copy(f, rc); err != nil {
		f.Close()
		os.Remove(f.Name())
		return "", hub.Wrap(hub.Unavailable, err, "read message content")
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return "", hub.Wrap(hub.Internal, err, "scratch file")
	}
	return f.Name(), nil
}

// scratchFile removes itself when closed.
type scratchFile struct{ *os.File }

func (f *scratchFile) Close() error {
	err := f.File.Close()
	os.Remove(f.File.Name())
	return err
}
