package eventlog

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/internal/atomicfile"
)

// Checkpoint is a signed statement "the entry with Seq has Hash", made at
// Time. Because each Hash covers the PrevHash before it, a valid
// checkpoint vouches for the whole chain up to Seq: an outside party that
// kept the exported checkpoints and the public key detects any rewrite of
// the log before the newest checkpoint, even one that recomputed every hash.
type Checkpoint struct {
	Seq       uint64    `json:"seq"`
	Hash      string    `json:"hash"`
	Time      time.Time `json:"time"`
	KeyID     string    `json:"keyId"`
	Signature string    `json:"signature"` // base64 (std) ed25519 signature of SignedBytes
}

// CheckpointVersion prefixes the signed bytes.
const CheckpointVersion = "posthub.eventlog.checkpoint.v1"

// SignedBytes is what the signature covers:
// "posthub.eventlog.checkpoint.v1\n<seq>\n<hash>\n<time as TimeLayout>".
func (c Checkpoint) SignedBytes() []byte {
	return []byte(CheckpointVersion + "\n" + strconv.FormatUint(c.Seq, 10) + "\n" + c.Hash + "\n" + c.Time.UTC().Format(TimeLayout))
}

// Sign fills KeyID and Signature.
func (c *Checkpoint) Sign(key ed25519.PrivateKey) {
	c.Time = CanonicalTime(c.Time)
	c.KeyID = KeyID(key.Public().(ed25519.PublicKey))
	c.Signature = base64.StdEncoding.EncodeToString(ed25519.Sign(key, c.SignedBytes()))
}

// Verify checks the signature with pub.
func (c Checkpoint) Verify(pub ed25519.PublicKey) error {
	sig, err := base64.StdEncoding.DecodeString(c.Signature)
	if err != nil || !ed25519.Verify(pub, c.SignedBytes(), sig) {
		return fmt.Errorf("checkpoint at seq %d: bad signature", c.Seq)
	}
	return nil
}

// Event is the checkpoint as a log entry (Seq and hashes still to be set).
func (c Checkpoint) Event(actor string) hub.Event {
	return hub.Event{ID: fmt.Sprintf("checkpoint-%d-%s", c.Seq, c.Hash[:16]), Time: c.Time, Tag: string(EventLogCheckpoint),
		Actor: actor, Detail: map[string]string{"seq": strconv.FormatUint(c.Seq, 10), "hash": c.Hash,
			"time": c.Time.UTC().Format(TimeLayout), "keyId": c.KeyID, "signature": c.Signature}}
}

// CheckpointOf reads a checkpoint back from its log entry.
func CheckpointOf(ev hub.Event) (Checkpoint, error) {
	if ev.Tag != string(EventLogCheckpoint) {
		return Checkpoint{}, fmt.Errorf("seq %d is not a checkpoint", ev.Seq)
	}
	seq, err := strconv.ParseUint(ev.Detail["seq"], 10, 64)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("checkpoint entry %d: bad seq: %w", ev.Seq, err)
	}
	t, err := time.Parse(TimeLayout, ev.Detail["time"])
	if err != nil {
		return Checkpoint{}, fmt.Errorf("checkpoint entry %d: bad time: %w", ev.Seq, err)
	}
	return Checkpoint{Seq: seq, Hash: ev.Detail["hash"], Time: t, KeyID: ev.Detail["keyId"], Signature: ev.Detail["signature"]}, nil
}

// KeyID is the first 16 hex digits of SHA-256 of the public key.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// ExportCheckpoints writes the log's checkpoints from seq from on as JSON
// lines and returns how many.
func ExportCheckpoints(ctx context.Context, store Querier, from uint64, w io.Writer) (int, error) {
	enc := json.NewEncoder(w)
	n := 0
	after := uint64(0)
	if from > 0 {
		after = from - 1
	}
	for {
		evs, err := store.QueryEvents(ctx, hub.EventQuery{Tags: []string{string(EventLogCheckpoint)}, AfterSeq: after, Limit: 1000})
		if err != nil {
			return n, err
		}
		for _, ev := range evs {
			cp, err := CheckpointOf(ev)
			if err != nil {
				return n, err
			}
			if err := enc.Encode(cp); err != nil {
				return n, err
			}
			n++
			after = ev.Seq
		}
		if len(evs) < 1000 {
			return n, nil
		}
	}
}

// ReadCheckpoints parses JSON lines written by ExportCheckpoints.
func ReadCheckpoints(r io.Reader) ([]Checkpoint, error) {
	var cps []Checkpoint
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		if len(sc.Bytes()) == 0 {
			continue
		}
		var cp Checkpoint
		if err := json.Unmarshal(sc.Bytes(), &cp); err != nil {
			return nil, fmt.Errorf("checkpoints line %d: %w", line, err)
		}
		cps = append(cps, cp)
	}
	return cps, sc.Err()
}

// Key files hold PEM blocks: "ED25519 PRIVATE KEY" (the 32-byte seed) or
// "ED25519 PUBLIC KEY" (32 bytes).
const (
	pemPrivate = "ED25519 PRIVATE KEY"
	pemPublic  = "ED25519 PUBLIC KEY"
)

// LoadOrCreateKey reads the signing key at path; when the file does not
// exist it generates one, writes it (0600) and the public key beside it
// (path + ".pub"), and returns it.
func LoadOrCreateKey(path string) (ed25519.PrivateKey, error) {
	key, err := atomicfile.LoadOrCreate(path, 0o600, func() ([]byte, error) {
		_, key, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		return pem.EncodeToMemory(&pem.Block{Type: pemPrivate, Bytes: key.Seed()}), nil
	}, parseKey)
	if err != nil {
		return nil, err
	}
	// The public key beside it is a convenience for verifiers; (re)written
	// when missing, so a crash between the two files mends itself.
	if _, err := os.Stat(path + ".pub"); errors.Is(err, os.ErrNotExist) {
		pub := pem.EncodeToMemory(&pem.Block{Type: pemPublic, Bytes: key.Public().(ed25519.PublicKey)})
		if err := atomicfile.Write(path+".pub", bytes.NewReader(pub), -1, 0o644); err != nil {
			return nil, err
		}
	}
	return key, nil
}

// LoadKey reads a private key file.
func LoadKey(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	key, err := parseKey(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return key, nil
}

func parseKey(b []byte) (ed25519.PrivateKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != pemPrivate || len(blk.Bytes) != ed25519.SeedSize {
		return nil, fmt.Errorf("not an %s PEM file", pemPrivate)
	}
	return ed25519.NewKeyFromSeed(blk.Bytes), nil
}

// LoadPublicKey reads a public key file (or derives it from a private one).
func LoadPublicKey(path string) (ed25519.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	switch {
	case blk != nil && blk.Type == pemPublic && len(blk.Bytes) == ed25519.PublicKeySize:
		return ed25519.PublicKey(blk.Bytes), nil
	case blk != nil && blk.Type == pemPrivate && len(blk.Bytes) == ed25519.SeedSize:
		return ed25519.NewKeyFromSeed(blk.Bytes).Public().(ed25519.PublicKey), nil
	}
	return nil, fmt.Errorf("%s: not an %s PEM file", path, pemPublic)
}
