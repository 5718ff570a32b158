package memo

import (
	"fmt"
	"io"

	"github.com/posthub/posthub/hub"
)

// The differences between the MeMo 1.1 and 1.2 schemas (the two
// MeMo_core.xsd files; the companion schemas are shared):
//
//   - Message/@memoSchVersion: required in 1.1, not declared in 1.2.
//   - Sender/Representative: 1.2 only.
//   - ForwardData/originalRepresentative: 1.2 only.
//   - MessageHeader/mandatory and legalNotification: required in 1.1,
//     optional in 1.2 (default false in both).
//
// Nothing else differs, so every other element converts unchanged.

// Loss is a piece of a message the target version cannot express.
type Loss struct {
	Path   string `json:"path"`
	Reason string `json:"reason"`
	// Value is what was dropped, when it is short text.
	Value string `json:"value,omitempty"`
}

// Convert returns m as MeMo version to ("1.1" or "1.2") and what could not
// be carried over. m is not modified; the result shares File contents (and
// other unchanged parts) with m. Converting to m's own version returns a copy
// with no losses. Invalid for an unknown target version.
func Convert(m *Message, to string) (*Message, []Loss, error) {
	if to != Version11 && to != Version12 {
		return nil, nil, hub.Errorf(hub.Invalid, "memo: cannot convert to memoVersion %q (1.1 or 1.2)", to)
	}
	out := *m
	out.Version = to
	h := &out.MessageHeader
	var losses []Loss
	switch to {
	case Version11:
		if out.SchVersion == "" {
			out.SchVersion = DefaultSchVersion
		}
		if h.Mandatory == nil {
			h.Mandatory = Bool(false)
		}
		if h.LegalNotification == nil {
			h.LegalNotification = Bool(false)
		}
		if r := h.Sender.Representative; r != nil {
			v := r.Label
			if r.RepresentativeID != "" {
				v = r.IDType + " " + r.RepresentativeID
				if r.Label != "" {
					v += " (" + r.Label + ")"
				}
			}
			losses = append(losses, Loss{
				Path:   "/Message/MessageHeader/Sender/Representative",
				Reason: "MeMo 1.1 has no Representative; the sender's representative is dropped",
				Value:  v,
			})
			h.Sender.Representative = nil
		}
		if f := h.ForwardData; f != nil && f.OriginalRepresentative != "" {
			fc := *f
			losses = append(losses, Loss{
				Path:   "/Message/MessageHeader/ForwardData/originalRepresentative",
				Reason: "MeMo 1.1 has no ForwardData/originalRepresentative",
				Value:  fc.OriginalRepresentative,
			})
			fc.OriginalRepresentative = ""
			h.ForwardData = &fc
		}
	case Version12:
		if m.Version == Version11 && out.SchVersion != "" && out.SchVersion != DefaultSchVersion {
			losses = append(losses, Loss{
				Path:   "/Message/@memoSchVersion",
				Reason: "MeMo 1.2 has no memoSchVersion",
				Value:  out.SchVersion,
			})
		}
		out.SchVersion = ""
	}
	return &out, losses, nil
}

// ConvertTo writes m as MeMo version to and returns the losses, as Convert
// and WriteTo.
func ConvertTo(w io.Writer, m *Message, to string) ([]Loss, error) {
	c, losses, err := Convert(m, to)
	if err != nil {
		return nil, err
	}
	if _, err := c.WriteTo(w); err != nil {
		return losses, fmt.Errorf("memo: write converted message: %w", err)
	}
	return losses, nil
}
