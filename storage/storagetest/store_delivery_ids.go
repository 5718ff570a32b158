package storagetest

import (
	"testing"

	"github.com/posthub/posthub/hub"
)

// deliveryIDTests check that a delivery is found by its ID alone whatever
// the ID's shape: the hub's (message UUID '@' queue, hub.DeliveryID), the
// one these tests build (UUID '/' queue), and IDs that do not begin with
// their message's UUID, which a backend may store apart from the others
// (bolt keeps the first two beside their message).
var deliveryIDTests = []storeTest{
	{"Deliveries are found by their ID alone, whether or not it begins with their message's UUID", func(t *testing.T, s hub.Store) {
		d := func(id, queue string) hub.Delivery {
			x := Delivery("m1", queue, T0)
			x.ID = id
			return x
		}
		ds := []hub.Delivery{
			d(hub.DeliveryID("m1", "system/a"), "system/a"),
			d("m1/system/b", "system/b"),
			d("plain-1", "system/c"),           // no separator
			d("m2/system/d", "system/d"),       // begins with another message's UUID
			d("m1x@system/e", "system/e"),      // begins with a longer UUID
			d("m1@other/system/f", "system/f"), // a delivery ID need not name its queue
		}
		must(t, s.PutMessage(ctx, Message("m1", []byte("one"), T0), ds[:3], Receipt("m1", T0)), "PutMessage m1")
		must(t, s.AddDeliveries(ctx, ds[3:]), "AddDeliveries")
		m2 := putMsg(t, s, "m2", T0, "system/m2")
		for _, x := range ds {
			got, err := s.GetDelivery(ctx, x.ID)
			must(t, err, "GetDelivery "+x.ID)
			if got.ID != x.ID || got.MessageUUID != "m1" || got.Queue != x.Queue {
				t.Fatalf("GetDelivery(%s) = %s of %s in %s", x.ID, got.ID, got.MessageUUID, got.Queue)
			}
		}
		all := seqIDs(ds)
		of, err := s.DeliveriesOf(ctx, "m1")
		must(t, err, "DeliveriesOf m1")
		sameStrings(t, sorted(seqIDs(of)), sorted(all), "DeliveriesOf m1")
		of, err = s.DeliveriesOf(ctx, "m2")
		must(t, err, "DeliveriesOf m2")
		sameStrings(t, seqIDs(of), seqIDs(m2), "DeliveriesOf m2")

		// Taken IDs are taken whatever their shape; AddDeliveries skips them.
		for i, id := range []string{ds[0].ID, ds[1].ID, "plain-1", "m2/system/d", "m2/system/m2"} {
			u := "m3-" + n(i)
			x := Delivery(u, "system/z", T0)
			x.ID = id
			wantCode(t, s.PutMessage(ctx, Message(u, []byte("three"), T0), []hub.Delivery{x}, Receipt(u, T0)), hub.Conflict, "PutMessage with taken delivery "+id)
		}
		must(t, s.AddDeliveries(ctx, []hub.Delivery{ds[1], ds[2]}), "AddDeliveries of stored IDs")
		of, err = s.DeliveriesOf(ctx, "m1")
		must(t, err, "DeliveriesOf m1 again")
		sameStrings(t, sorted(seqIDs(of)), sorted(all), "DeliveriesOf m1 after adding stored IDs")

		for i, x := range ds {
			c, err := s.ClaimNext(ctx, x.Queue, "p", ttl, T0)
			must(t, err, "ClaimNext "+x.Queue)
			if c.Delivery.ID != x.ID || c.Message.UUID != "m1" {
				t.Fatalf("ClaimNext(%s) = %s of message %q, want %s of m1", x.Queue, c.Delivery.ID, c.Message.UUID, x.ID)
			}
			must(t, s.Park(ctx, x.ID, "x"), "Park "+x.ID)
			if got, err := s.GetDelivery(ctx, x.ID); err != nil || got.State != hub.DeliveryParked {
				t.Fatalf("GetDelivery(%s) after Park: %s, %v", x.ID, got.State, err)
			}
			if n, err := s.CountQueue(ctx, x.Queue); err != nil || n != 0 {
				t.Fatalf("CountQueue(%s) after Park = %d, %v; want 0", x.Queue, n, err)
			}
			must(t, s.Unpark(ctx, x.ID), "Unpark "+x.ID)
			res, err := s.Ack(ctx, x.ID, T0)
			must(t, err, "Ack "+x.ID)
			if last := i == len(ds)-1; res.AlreadyAcked || res.Unreferenced != last {
				t.Fatalf("Ack(%s) = %+v; want Unreferenced %v", x.ID, res, last)
			}
			_, err = s.GetDelivery(ctx, x.ID)
			wantCode(t, err, hub.NotFound, "GetDelivery after Ack "+x.ID)
			if res, err := s.Ack(ctx, x.ID, T0); err != nil || !res.AlreadyAcked {
				t.Fatalf("second Ack(%s) = %+v, %v", x.ID, res, err)
			}
		}
		of, err = s.DeliveriesOf(ctx, "m1")
		must(t, err, "DeliveriesOf m1 at the end")
		sameStrings(t, seqIDs(of), nil, "DeliveriesOf m1 after every ack")
		of, err = s.DeliveriesOf(ctx, "m2")
		must(t, err, "DeliveriesOf m2 at the end")
		sameStrings(t, seqIDs(of), seqIDs(m2), "DeliveriesOf m2 at the end")
		must(t, s.Repair(ctx, T0), "Repair")
		if n, err := s.CountQueue(ctx, "system/m2"); err != nil || n != 1 {
			t.Fatalf("CountQueue(system/m2) after Repair = %d, %v; want 1 (m2's)", n, err)
		}
	}},
}
