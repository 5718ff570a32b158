package hub

import (
	"context"
	"errors"
	"testing"
	"time"
)

// fakeDirectory is the part of Store the router reads, in memory. Methods
// the router does not call panic through the nil embedded interface.
type fakeDirectory struct {
	Store
	contacts map[string]Contact
	orgs     map[string]Organisation
	systems  map[string][]System
	points   map[string]ContactPoint
	rules    map[string][]RoutingRule
}

func (f *fakeDirectory) GetContact(_ context.Context, id string) (Contact, error) {
	if c, ok := f.contacts[id]; ok {
		return c, nil
	}
	return Contact{}, Errorf(NotFound, "no contact")
}

func (f *fakeDirectory) GetOrg(_ context.Context, cvr string) (Organisation, error) {
	if o, ok := f.orgs[cvr]; ok {
		return o, nil
	}
	return Organisation{}, Errorf(NotFound, "no org")
}

func (f *fakeDirectory) ListSystems(_ context.Context, org string) ([]System, error) {
	return f.systems[org], nil
}

func (f *fakeDirectory) GetContactPoint(_ context.Context, id string) (ContactPoint, error) {
	if p, ok := f.points[id]; ok {
		return p, nil
	}
	return ContactPoint{}, Errorf(NotFound, "no point")
}

// ListContactPoints answers in map order, so a test cannot lean on it.
func (f *fakeDirectory) ListContactPoints(_ context.Context, org string) ([]ContactPoint, error) {
	var out []ContactPoint
	for _, p := range f.points {
		if p.OrgCVR == org {
			out = append(out, p)
		}
	}
	return out, nil
}

func (f *fakeDirectory) ListRoutingRules(_ context.Context, org string) ([]RoutingRule, error) {
	return f.rules[org], nil
}

func directory() *fakeDirectory {
	recv := func(id string, mb MailboxKind, def, active bool) System {
		return System{ID: id, OrgCVR: "11111111", Role: RecipientSystem, Mailbox: mb, Default: def, Active: active}
	}
	return &fakeDirectory{
		contacts: map[string]Contact{
			"0101011234": {ID: "0101011234", Status: Registered},
			"0202021234": {ID: "0202021234", Status: Exempt, Address: []string{"A", "Vej 1", "1000 By"}},
			"0303031234": {ID: "0303031234", Status: Registered, NemSMS: true, Phone: "+4511223344"},
			"0404041234": {ID: "0404041234", Status: Exempt},
		},
		orgs: map[string]Organisation{
			"11111111": {CVR: "11111111", Kind: Authority, Setup: SetupContactable, Active: true},
			"22222222": {CVR: "22222222", Kind: Company, Setup: SetupSystemRetrieval, Active: true},
			"44444444": {CVR: "44444444", Kind: Authority, Setup: SetupMailboxOnly, Active: true},
			"33333333": {CVR: "33333333", Kind: Authority, Setup: SetupSystemRetrieval, Active: true},
		},
		systems: map[string][]System{
			"11111111": {recv("def", AuthorityPost, true, true), recv("pt", AuthorityPost, false, true),
				recv("rule", AuthorityPost, false, true), recv("cvr", CVRPost, false, true), recv("off", AuthorityPost, false, false)},
			"22222222": {{ID: "co", OrgCVR: "22222222", Role: RecipientSystem, Mailbox: CVRPost, Active: true}},
			"33333333": {{ID: "def3", OrgCVR: "33333333", Role: RecipientSystem, Mailbox: AuthorityPost, Default: true, Active: true},
				{ID: "p3", OrgCVR: "33333333", Role: RecipientSystem, Mailbox: AuthorityPost, Active: true}},
		},
		points: map[string]ContactPoint{
			"cp1": {ID: "cp1", OrgCVR: "11111111", SystemID: "pt", Active: true, SizeThresholdMB: 1, AttachmentLimit: 2,
				Codes: []ContactPointCode{{CodeKLE, "02.00"}, {CodeFORM, "30.05"}, {CodeGLN, "5790000000001"}, {CodeCustom, "08.00"}}},
			"cpX":  {ID: "cpX", OrgCVR: "22222222", SystemID: "co", Active: true},
			"cpIn": {ID: "cpIn", OrgCVR: "11111111", SystemID: "pt", Active: false, Codes: []ContactPointCode{{CodeKLE, "03.00"}}},
			"cpOf": {ID: "cpOf", OrgCVR: "11111111", SystemID: "off", Active: true, Codes: []ContactPointCode{{CodeKLE, "04.00"}}},
			// A more specific code than cp1's, and codes under a rule's prefix.
			"cpSp": {ID: "cpSp", OrgCVR: "11111111", SystemID: "rule", Active: true, Codes: []ContactPointCode{{CodeKLE, "02.00.05"}}},
			"cp17": {ID: "cp17", OrgCVR: "11111111", SystemID: "pt", Active: true, Codes: []ContactPointCode{{CodeKLE, "17.05"}}},
			// Two points with one code: the older one wins.
			"cpOld": {ID: "cpOld", OrgCVR: "11111111", SystemID: "pt", Active: true, Created: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
				Codes: []ContactPointCode{{CodeSOR, "123"}}},
			"cpNew": {ID: "cpNew", OrgCVR: "11111111", SystemID: "rule", Active: true, Created: time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC),
				Codes: []ContactPointCode{{CodeSOR, "123"}}},
			// A point of an organisation without a contact structure.
			"cp3": {ID: "cp3", OrgCVR: "33333333", SystemID: "p3", Active: true, Codes: []ContactPointCode{{CodeKLE, "02.00"}}},
		},
		rules: map[string][]RoutingRule{
			"11111111": {{Priority: 1, Field: "KLE", Value: "17.*", SystemID: "rule"}, {Priority: 2, Field: "CaseID", Value: "S-1", SystemID: "off"}},
		},
	}
}

func TestRouterDesignatesExactlyOneDestination(t *testing.T) {
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	r := &Router{Store: directory()}
	cpr := func(id string) Letter {
		return Letter{UUID: "u", RecipientID: id, RecipientType: "CPR", MessageType: "DIGITALPOST"}
	}
	cvr := func(id string) Letter {
		return Letter{UUID: "u", RecipientID: id, RecipientType: "CVR", MessageType: "DIGITALPOST"}
	}
	with := func(l Letter, f func(*Letter)) Letter { f(&l); return l }
	cases := []struct {
		name   string
		letter Letter
		mode   Mode
		queue  string // "" = not delivered
		state  MessageState
		reason string
	}{
		{"registered citizen → mailbox", cpr("0101011234"), ModeAutomatic, MailboxQueue("0101011234", ""), MessageActive, ""},
		{"unknown citizen is registered by default", cpr("0909091234"), ModeAutomatic, MailboxQueue("0909091234", ""), MessageActive, ""},
		{"exempt citizen, automatic → print", cpr("0202021234"), ModeAutomatic, PrintQueue, MessageActive, ""},
		{"exempt citizen, digital only → not delivered", cpr("0202021234"), ModeDigitalOnly, "", MessageNotDelivered, "recipient.exempt"},
		{"exempt citizen without address → not delivered", cpr("0404041234"), ModeAutomatic, "", MessageNotDelivered, "recipient.address.unknown"},
		{"address in the letter is used for print where the register has none", with(cpr("0404041234"), func(l *Letter) { l.Address = []string{"X", "Y"} }), ModeAutomatic, PrintQueue, MessageActive, ""},
		{"print chosen → print", cpr("0202021234"), ModePrintOnly, PrintQueue, MessageActive, ""},
		{"NEMSMS type → sms", with(cpr("0303031234"), func(l *Letter) { l.MessageType = "NEMSMS"; l.Notification = "hej" }), ModeAutomatic, SMSQueue, MessageActive, ""},
		{"NemSMS to unregistered → not delivered", with(cpr("0101011234"), func(l *Letter) { l.MessageType = "NEMSMS"; l.Notification = "hej" }), ModeNemSMS, "", MessageNotDelivered, "nemsms.not.registered"},
		{"contact point → its system", with(cvr("11111111"), func(l *Letter) { l.ContactPoint = "cp1" }), ModeAutomatic, SystemQueue("pt"), MessageActive, ""},
		{"contact point on an inactive system → rules/default", with(cvr("11111111"), func(l *Letter) { l.ContactPoint = "cpOf" }), ModeAutomatic, SystemQueue("def"), MessageActive, ""},
		{"KLE rule by prefix", with(cvr("11111111"), func(l *Letter) { l.Attrs = map[string]string{"KLE": "17.02.00"} }), ModeAutomatic, SystemQueue("rule"), MessageActive, ""},
		{"rule to an inactive system is skipped", with(cvr("11111111"), func(l *Letter) { l.Attrs = map[string]string{"CaseID": "S-1"} }), ModeAutomatic, SystemQueue("def"), MessageActive, ""},
		{"default system", cvr("11111111"), ModeAutomatic, SystemQueue("def"), MessageActive, ""},
		{"VIRKSOMHEDSPOST → CVR system", with(cvr("11111111"), func(l *Letter) { l.PostType = "virksomhedspost" }), ModeAutomatic, SystemQueue("cvr"), MessageActive, ""},
		{"company → its system", cvr("22222222"), ModeAutomatic, SystemQueue("co"), MessageActive, ""},
		{"mailbox-only authority → its mailbox", cvr("44444444"), ModeAutomatic, MailboxQueue("44444444", AuthorityPost), MessageActive, ""},
		{"unknown organisation → CVR mailbox", cvr("55555555"), ModeAutomatic, MailboxQueue("55555555", CVRPost), MessageActive, ""},
		{"future date → held", with(cpr("0101011234"), func(l *Letter) { l.NotBefore = now.Add(48 * time.Hour) }), ModeAutomatic, MailboxQueue("0101011234", ""), MessageHeld, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rt, err := r.Route(context.Background(), c.letter, c.mode, now)
			if err != nil {
				t.Fatal(err)
			}
			if rt.State != c.state || rt.ReasonCode != c.reason {
				t.Fatalf("state %s reason %q, want %s %q", rt.State, rt.ReasonCode, c.state, c.reason)
			}
			if c.queue == "" {
				if len(rt.Deliveries) != 0 {
					t.Fatalf("deliveries %+v, want none", rt.Deliveries)
				}
				return
			}
			if len(rt.Deliveries) != 1 || rt.Deliveries[0].Queue != c.queue {
				t.Fatalf("deliveries %+v, want one to %s", rt.Deliveries, c.queue)
			}
			d := rt.Deliveries[0]
			if d.ID != DeliveryID("u", c.queue) || d.State != DeliveryReady || d.MessageUUID != "u" {
				t.Fatalf("delivery %+v", d)
			}
			if c.state == MessageHeld && !d.AvailableAt.Equal(c.letter.NotBefore) {
				t.Fatalf("held until %s, want %s", d.AvailableAt, c.letter.NotBefore)
			}
		})
	}
}

func TestRouterRefusesWhatTheContactPointCannotTake(t *testing.T) {
	r := &Router{Store: directory()}
	base := Letter{UUID: "u", RecipientID: "11111111", RecipientType: "CVR", MessageType: "DIGITALPOST"}
	cases := []struct {
		name string
		edit func(*Letter)
		code string
	}{
		{"unknown contact point", func(l *Letter) { l.ContactPoint = "nope" }, "contact.point.not.found"},
		{"another organisation's contact point", func(l *Letter) { l.ContactPoint = "cpX" }, "contact.point.not.found"},
		{"inactive contact point", func(l *Letter) { l.ContactPoint = "cpIn" }, "contact.point.not.found"},
		{"larger than the threshold", func(l *Letter) { l.ContactPoint = "cp1"; l.Size = 2 << 20 }, "contact.point.size.exceeded"},
		{"more attachments than allowed", func(l *Letter) { l.ContactPoint = "cp1"; l.Attachments = 3 }, "contact.point.attachments.exceeded"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := base
			c.edit(&l)
			_, err := r.Route(context.Background(), l, ModeAutomatic, time.Now())
			he, ok := err.(*Error)
			if !ok || he.Code != Invalid || len(he.Fields) != 1 || he.Fields[0].Code != c.code {
				t.Fatalf("err %v, want %s", err, c.code)
			}
		})
	}
}

func TestParseModeAcceptsSF1601Names(t *testing.T) {
	for in, want := range map[string]Mode{"": ModeAutomatic, "Automatisk Valg": ModeAutomatic, "digital post": ModeDigitalOnly,
		"Fysisk Post": ModePrintOnly, "NemSMS": ModeNemSMS, "PRINT": ModePrintOnly} {
		if got, err := ParseMode(in); err != nil || got != want {
			t.Errorf("ParseMode(%q) = %s, %v; want %s", in, got, err, want)
		}
	}
	if _, err := ParseMode("pigeon"); ErrorCode(err) != Invalid {
		t.Errorf("unknown mode: %v", err)
	}
}

// TestRouterContactPointCodes: after an explicit contact point and before
// the rules, the letter's KLE/FORM/GLN/SOR codes designate the contact
// point whose codes match them most specifically.
func TestRouterContactPointCodes(t *testing.T) {
	r := &Router{Store: directory()}
	letter := func(org string, attrs ...string) Letter {
		l := Letter{UUID: "u", RecipientID: org, RecipientType: "CVR", MessageType: "DIGITALPOST", Attrs: map[string]string{}}
		for i := 0; i+1 < len(attrs); i += 2 {
			l.Attrs[attrs[i]] = attrs[i+1]
		}
		return l
	}
	with := func(l Letter, f func(*Letter)) Letter { f(&l); return l }
	cases := []struct {
		name   string
		letter Letter
		system string
	}{
		{"a KLE code designates its point", letter("11111111", "KLE", "02.00"), "pt"},
		{"a KLE code covers the subjects under it", letter("11111111", "KLE", "02.00.07"), "pt"},
		{"not a sibling sharing its digits", letter("11111111", "KLE", "02.001"), "def"},
		{"the most specific code wins", letter("11111111", "KLE", "02.00.05"), "rule"},
		{"a FORM code designates its point", letter("11111111", "FORM", "30.05.01"), "pt"},
		{"a GLN code matches exactly only", letter("11111111", "GLN", "57900000000012"), "def"},
		{"a GLN code designates its point", letter("11111111", "GLN", "5790000000001"), "pt"},
		{"a CUSTOM code routes nothing", letter("11111111", "KLE", "08.00"), "def"},
		{"codes come before the rules", letter("11111111", "KLE", "17.05.01"), "pt"},
		{"the rules still apply without a code match", letter("11111111", "KLE", "17.02.00"), "rule"},
		{"on a tie the older point wins", letter("11111111", "SOR", "123"), "pt"},
		{"an explicit contact point comes first", with(letter("11111111", "KLE", "02.00.05"), func(l *Letter) { l.ContactPoint = "cp1" }), "pt"},
		{"an inactive point's codes route nothing", letter("11111111", "KLE", "03.00"), "def"},
		{"a point of an inactive system routes nothing", letter("11111111", "KLE", "04.00"), "def"},
		{"a letter beyond a point's limits goes on", with(letter("11111111", "KLE", "02.00"), func(l *Letter) { l.Size = 2 << 20 }), "def"},
		{"CVR post ignores contact points", with(letter("11111111", "KLE", "02.00"), func(l *Letter) { l.PostType = "VIRKSOMHEDSPOST" }), "cvr"},
		{"not for an organisation without a contact structure", letter("33333333", "KLE", "02.00"), "def3"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for range 5 { // the store answers in random order
				rt, err := r.Route(context.Background(), c.letter, ModeAutomatic, time.Now())
				if err != nil {
					t.Fatal(err)
				}
				if len(rt.Deliveries) != 1 || rt.Deliveries[0].SystemID != c.system {
					t.Fatalf("deliveries %+v, want one to %s", rt.Deliveries, c.system)
				}
			}
		})
	}
}

// TestPrintGoesToTheRegistersAddress: an exempt citizen's letter is printed
// to the contact register's address; the letter's own address (its
// Recipient/AttentionData) only where the register has none, and the spool
// says which. (A letter's address used to beat the register's, and
// LetterOf took ContentData's address — what the letter is about, such as
// a property — as the print address.)
func TestPrintGoesToTheRegistersAddress(t *testing.T) {
	r := &Router{Store: directory()}
	cpr := func(id string) Letter {
		return Letter{UUID: "u", RecipientID: id, RecipientType: "CPR", MessageType: "DIGITALPOST"}
	}
	l := cpr("0202021234")
	l.Address = []string{"Fritaget Borger", "Sommerhusvej 9", "4500 Nykøbing Sj"}
	rt, err := r.Route(context.Background(), l, ModeAutomatic, time.Now())
	if err != nil || len(rt.Deliveries) != 1 {
		t.Fatal(rt, err)
	}
	if m := rt.Deliveries[0].Meta; m["address"] != "A\nVej 1\n1000 By" || m["addressSource"] != "register" {
		t.Errorf("printed to %q (%s), want the register's", m["address"], m["addressSource"])
	}
	l = cpr("0404041234")
	l.Address = []string{"X", "Y"}
	if rt, err = r.Route(context.Background(), l, ModeAutomatic, time.Now()); err != nil || len(rt.Deliveries) != 1 {
		t.Fatal(rt, err)
	}
	if m := rt.Deliveries[0].Meta; m["address"] != "X\nY" || m["addressSource"] != "letter" {
		t.Errorf("printed to %q (%s), want the letter's", m["address"], m["addressSource"])
	}
}

// TestTheModeFitsTheMessageType: a DIGITALPOST letter sent with mode
// NemSMS had its notification sent by SMS and its documents delivered
// nowhere, accepted (201); a NEMSMS MeMo sent with mode PRINT went by SMS.
// Both are refused, with the mode as the field.
func TestTheModeFitsTheMessageType(t *testing.T) {
	r := &Router{Store: directory()}
	letter := func(typ string) Letter {
		return Letter{UUID: "u", RecipientID: "0303031234", RecipientType: "CPR", MessageType: typ, Notification: "hej"}
	}
	for _, c := range []struct {
		typ  string
		mode Mode
		ok   bool
	}{
		{"DIGITALPOST", ModeNemSMS, false}, {"NEMSMS", ModePrintOnly, false}, {"NEMSMS", ModeDigitalOnly, false},
		{"NEMSMS", ModeNemSMS, true}, {"NEMSMS", ModeAutomatic, true}, {"nemsms", "", true}, {"DIGITALPOST", ModeAutomatic, true},
	} {
		rt, err := r.Route(context.Background(), letter(c.typ), c.mode, time.Now())
		if c.ok {
			if err != nil || len(rt.Deliveries) != 1 {
				t.Errorf("%s with mode %q: %+v %v", c.typ, c.mode, rt, err)
			}
			continue
		}
		var he *Error
		if !errors.As(err, &he) || he.Code != Invalid || len(he.Fields) != 1 || he.Fields[0].Code != "mode.message.type.mismatch" || he.Fields[0].Field != "mode" {
			t.Errorf("%s with mode %q: %+v %v, want Invalid mode.message.type.mismatch", c.typ, c.mode, rt, err)
		}
	}
}
