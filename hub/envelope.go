package hub

import (
	"bytes"
	"context"
	"io"
	"maps"
	"strings"
)

// Envelope is what a sender's transport says about one submission beside
// its MeMo. The NgDP route says nothing more; SF1601's kombi send says a
// transaction id and may carry a print rendition of the letter.
type Envelope struct {
	// TransactionID is the sender's id of the call (SF1601's
	// X-TransaktionsId). It is recorded on the receipt and in the
	// MEMO_SEND_RECEIVED event's detail.
	TransactionID string
	// Print is the letter's print rendition as a standalone XML document
	// (SF1601's ForsendelseISamling, validated by the transport), or nil.
	// It travels with the letter to the print queue when the letter is
	// printed, and is dropped when it is delivered otherwise.
	Print []byte
	// PrintRecipient and PrintAddress are the recipient (CPR or CVR) and
	// the postal lines the print rendition names, when it names them. The
	// rendition's recipient must be the letter's; its address is the one
	// on the paper, so a printed letter is sent there.
	PrintRecipient string
	PrintAddress   []string
}

// Delivery.Meta keys of a print delivery's print rendition: inline up to
// Ingest.InlineMax bytes, else the key of a blob that the print outbox
// deletes once the provider has taken the letter.
const (
	MetaPrint    = "fjernprint"
	MetaPrintKey = "fjernprintKey"
)

// attachPrint gives the print deliveries among ds the print rendition p.
// It returns the blob key it stored p under, "" when p is inline or there
// is no print delivery. The key is this submission's own (its receipt's
// transmission id, tid), never one a resubmission of the UUID would write
// as well: a submission that does not commit deletes what it wrote without
// asking whom else it might serve.
func (in *Ingest) attachPrint(ctx context.Context, uuid, tid string, ds []Delivery, p []byte) (string, error) {
	key := ""
	for i := range ds {
		if ds[i].Channel != ChannelPrint {
			continue
		}
		meta := maps.Clone(ds[i].Meta)
		if meta == nil {
			meta = map[string]string{}
		}
		if int64(len(p)) <= in.InlineMax {
			meta[MetaPrint] = string(p)
		} else {
			if key == "" {
				key = "print/" + uuid + "/" + tid
				if _, err := in.Blobs.Put(ctx, key, bytes.NewReader(p), int64(len(p))); err != nil {
					return "", err
				}
			}
			meta[MetaPrintKey] = key
		}
		ds[i].Meta = meta
	}
	return key, nil
}

// openPrint returns a reader of d's print rendition, nil when it has none.
func openPrint(ctx context.Context, blobs Blobs, d Delivery) (io.ReadCloser, error) {
	if p, ok := d.Meta[MetaPrint]; ok {
		return io.NopCloser(strings.NewReader(p)), nil
	}
	if key := d.Meta[MetaPrintKey]; key != "" {
		return blobs.Open(ctx, key)
	}
	return nil, nil
}

// dropPrint deletes d's print rendition blob, if it has one; d is gone.
func dropPrint(ctx context.Context, blobs Blobs, d Delivery) {
	if key := d.Meta[MetaPrintKey]; key != "" {
		_ = blobs.Delete(ctx, key)
	}
}
