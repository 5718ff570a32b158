package memo

import (
	"strings"
	"testing"
	"time"
)

// validLetter is a message that passes every rule; each case breaks one.
func validLetter() *Message {
	m := NewLetter(Letter{
		From: "12345678", To: "2211771212", Label: "Brev", Created: fixedNow,
		ContactPointID: "241d39f6-998e-4929-b198-ccacbbf4b330",
		Main:           PDF("brev.pdf", SamplePDF("x")),
	})
	m.MessageHeader.MessageUUID = "78212f5c-6d79-4012-8ed1-e2420243bd17"
	return m
}

func TestCheckValidLetterPasses(t *testing.T) {
	if errs := validLetter().Check(DefaultConfig(), fixedNow); len(errs) != 0 {
		t.Fatalf("%+v", errs)
	}
}

func TestCheckRules(t *testing.T) {
	const hp = "/Message/MessageHeader"
	const f1 = "/Message/MessageBody/MainDocument/File[1]"
	cases := []struct {
		rule, field, value string
		mutate             func(m *Message)
		cfg                func(c *Config)
	}{
		{RuleMessageType, hp + "/messageType", "LETTER", func(m *Message) { m.MessageHeader.MessageType = "LETTER" }, nil},
		{RuleMessageUUID, hp + "/messageUUID", "78212f5c-6d79-1012-8ed1-e2420243bd17", func(m *Message) {
			m.MessageHeader.MessageUUID = "78212f5c-6d79-1012-8ed1-e2420243bd17"
		}, nil},
		{RuleIDType, hp + "/Recipient/idType", "MYNDIGHEDSID", func(m *Message) { m.MessageHeader.Recipient.IDType = "MYNDIGHEDSID" }, nil},
		{RuleIDType, hp + "/Sender/Representative/idType", "", func(m *Message) {
			m.MessageHeader.Sender.Representative = &Representative{RepresentativeID: "12345678"}
		}, nil},
		{RuleCPRFormat, hp + "/Recipient/recipientID", "221177121", func(m *Message) { m.MessageHeader.Recipient.RecipientID = "221177121" }, nil},
		{RuleCPRFormat, hp + "/Recipient/recipientID", "Recipient ID", func(m *Message) { m.MessageHeader.Recipient.RecipientID = "Recipient ID" }, nil},
		{RuleCPRFormat, hp + "/ContentData/CPRdata/cprNumber", "22117712-1", func(m *Message) {
			m.MessageHeader.ContentData = &ContentData{CPRdata: &CPRdata{CPRNumber: "22117712-1"}}
		}, nil},
		{RuleCVRFormat, hp + "/Sender/senderID", "1234567", func(m *Message) { m.MessageHeader.Sender.SenderID = "1234567" }, nil},
		{RuleCVRFormat, hp + "/Recipient/recipientID", "2211771212", func(m *Message) { m.MessageHeader.Recipient.IDType = IDTypeCVR }, nil},
		{RuleCVRFormat, hp + "/Sender/Representative/representativeID", "x", func(m *Message) {
			m.MessageHeader.Sender.Representative = &Representative{RepresentativeID: "x", IDType: IDTypeCVR}
		}, nil},
		{RuleCVRFormat, hp + "/ContentData/CVRdata/cvrNumber", "DK12345678", func(m *Message) {
			m.MessageHeader.ContentData = &ContentData{CVRdata: &CVRdata{CVRNumber: "DK12345678"}}
		}, nil},
		{RuleContactPointIDFormat, hp + "/Recipient/ContactPoint/contactPointID", "kontakt-1", func(m *Message) {
			m.MessageHeader.Recipient.ContactPoint.ContactPointID = "kontakt-1"
		}, nil},
		{RuleContactPointIDFormat, hp + "/ReplyData[1]/contactPointID", "cp", func(m *Message) {
			m.MessageHeader.ReplyData = []ReplyData{{MessageUUID: NewUUID(), ContactPointID: "cp"}}
		}, nil},
		{RuleEmptyNotification, hp + "/notification", " ", func(m *Message) {
			m.MessageHeader.MessageType, m.MessageHeader.Notification, m.MessageBody = TypeNemSMS, " ", nil
		}, nil},
		{RuleNemSMSDocuments, "/Message/MessageBody", "", func(m *Message) {
			m.MessageHeader.MessageType, m.MessageHeader.Notification = TypeNemSMS, "SMS"
		}, nil},
		{RuleDeliveryDateFormat, hp + "/doNotDeliverUntilDate", "1/9/2025", func(m *Message) { m.MessageHeader.DoNotDeliverUntilDate = "1/9/2025" }, nil},
		{RuleDeliveryDateEarly, hp + "/doNotDeliverUntilDate", "2025-08-31", func(m *Message) { m.MessageHeader.DoNotDeliverUntilDate = "2025-08-31" }, nil},
		{RuleDeliveryDateLate, hp + "/doNotDeliverUntilDate", "2026-09-02", func(m *Message) { m.MessageHeader.DoNotDeliverUntilDate = "2026-09-02" }, nil},
		{RuleDeliveryDateLate, hp + "/doNotDeliverUntilDate", "2025-09-09", func(m *Message) { m.MessageHeader.DoNotDeliverUntilDate = "2025-09-09" },
			func(c *Config) { c.MaxDelay = 7 * 24 * time.Hour }},
		{RuleFilenameCharacters, f1 + "/filename", "a:b.pdf", func(m *Message) { m.MessageBody.MainDocument.Files[0].Filename = "a:b.pdf" }, nil},
		{RuleFilenameCharacters, f1 + "/filename", "a\u00a0b.pdf", func(m *Message) { m.MessageBody.MainDocument.Files[0].Filename = "a\u00a0b.pdf" }, nil},
		{RuleFilenameCharacters, f1 + "/filename", "a\u3000b.pdf", func(m *Message) { m.MessageBody.MainDocument.Files[0].Filename = "a\u3000b.pdf" }, nil},
		{RuleFileEmpty, f1 + "/content", "", func(m *Message) { m.MessageBody.MainDocument.Files[0].SetContent(nil) }, nil},
		{RuleFileFormat, f1 + "/encodingFormat", "application/x-msdownload", func(m *Message) {
			m.MessageBody.MainDocument.Files[0].EncodingFormat = "application/x-msdownload"
		}, nil},
		{RuleFileExtension, f1 + "/filename", "brev.exe", func(m *Message) { m.MessageBody.MainDocument.Files[0].Filename = "brev.exe" }, nil},
		{RuleFileExtension, f1 + "/filename", "brev", func(m *Message) { m.MessageBody.MainDocument.Files[0].Filename = "brev" }, nil},
		{RuleEntryPointURL, "/Message/MessageBody/MainDocument/Action[1]/EntryPoint/url", "/relative", func(m *Message) {
			m.MessageBody.MainDocument.Actions = []Action{{Label: "a", ActionCode: "SELVBETJENING", EntryPoint: &EntryPoint{URL: "/relative"}}}
		}, nil},
		{RuleEntryPointScheme, "/Message/MessageBody/MainDocument/Action[1]/EntryPoint/url", "http://example.dk", func(m *Message) {
			m.MessageBody.MainDocument.Actions = []Action{{Label: "a", ActionCode: "SELVBETJENING", EntryPoint: &EntryPoint{URL: "http://example.dk"}}}
		}, nil},
		{RuleMessageTooLarge, "/Message", "2000", func(m *Message) { m.Size = 2000 }, func(c *Config) { c.MaxSize = 1000 }},
	}
	seen := map[string]bool{}
	for _, c := range cases {
		seen[c.rule] = true
		t.Run(c.rule, func(t *testing.T) {
			m := validLetter()
			c.mutate(m)
			cfg := DefaultConfig()
			if c.cfg != nil {
				c.cfg(&cfg)
			}
			errs := m.Check(cfg, fixedNow)
			if len(errs) != 1 {
				t.Fatalf("want exactly one error %s, got %+v", c.rule, errs)
			}
			e := errs[0]
			if e.Code != c.rule || e.Field != c.field || e.RejectedValue != c.value || e.Resource != "memo" || e.Message == "" {
				t.Fatalf("got %+v, want code %s field %s value %q", e, c.rule, c.field, c.value)
			}
		})
	}
	for _, r := range Rules {
		if !seen[r.Code] {
			t.Errorf("rule %s has no negative case", r.Code)
		}
	}
}

func TestCheckEdgesThatPass(t *testing.T) {
	cfg := DefaultConfig()
	for name, mutate := range map[string]func(m *Message){
		"delivery today":          func(m *Message) { m.MessageHeader.DoNotDeliverUntilDate = "2025-09-01" },
		"delivery at the max":     func(m *Message) { m.MessageHeader.DoNotDeliverUntilDate = "2026-09-01" },
		"delivery date with zone": func(m *Message) { m.MessageHeader.DoNotDeliverUntilDate = "2025-09-02+02:00" },
		"mime with params": func(m *Message) {
			m.MessageBody.MainDocument.Files[0].EncodingFormat = "Application/PDF; charset=binary"
		},
		"upper-case extension": func(m *Message) { m.MessageBody.MainDocument.Files[0].Filename = "BREV.PDF" },
		"CVR recipient": func(m *Message) {
			m.MessageHeader.Recipient.RecipientID, m.MessageHeader.Recipient.IDType = "87654321", IDTypeCVR
		},
		"https entry point": func(m *Message) {
			m.MessageBody.MainDocument.Actions = []Action{{EntryPoint: &EntryPoint{URL: "https://x.dk/å?a=1&b=2"}}}
		},
		"empty representative 1.2": func(m *Message) { m.MessageHeader.Sender.Representative = &Representative{Label: "Advokat"} },
	} {
		t.Run(name, func(t *testing.T) {
			m := validLetter()
			mutate(m)
			if errs := m.Check(cfg, fixedNow); len(errs) != 0 {
				t.Fatalf("%+v", errs)
			}
		})
	}
}

// TestCheckSamples pins the verdict on every sample, judged on 2025-09-01.
func TestCheckSamples(t *testing.T) {
	want := map[string][]string{
		"v1.1/MeMo_Full_Example.xml": {
			RuleDeliveryDateEarly + " /Message/MessageHeader/doNotDeliverUntilDate",
			RuleEntryPointScheme + " /Message/MessageBody/MainDocument/Action[1]/EntryPoint/url",
			RuleEntryPointScheme + " /Message/MessageBody/AdditionalDocument[1]/Action[1]/EntryPoint/url",
			RuleEntryPointScheme + " /Message/MessageBody/AdditionalDocument[2]/Action[1]/EntryPoint/url",
		},
		"v1.1/MeMo_Minimum_Example.xml": nil,
		"v1.1/MeMo_NemSMS.xml": {
			RuleCVRFormat + " /Message/MessageHeader/Sender/senderID",
			RuleCPRFormat + " /Message/MessageHeader/Recipient/recipientID",
		},
		"v1.1/MeMo_with_attachment.xml": {
			RuleCVRFormat + " /Message/MessageHeader/Sender/senderID",
			RuleCPRFormat + " /Message/MessageHeader/Recipient/recipientID",
		},
		"v1.2/MeMo_Full_Example.xml":    nil,
		"v1.2/MeMo_Minimum_Example.xml": nil,
		"v1.2/MeMo_NemSMS.xml": {
			RuleCVRFormat + " /Message/MessageHeader/Sender/senderID",
			RuleCPRFormat + " /Message/MessageHeader/Recipient/recipientID",
		},
		"v1.2/MeMo_with_attachment.xml": {
			RuleCVRFormat + " /Message/MessageHeader/Sender/senderID",
			RuleCPRFormat + " /Message/MessageHeader/Recipient/recipientID",
		},
	}
	for _, path := range memoSamples(t) {
		name := strings.TrimPrefix(path, "testdata/samples/")
		if strings.HasPrefix(name, "legacy") {
			continue // refused by the parser: TestParseSamplesAllEntryPointsAgree
		}
		w, ok := want[name]
		if !ok {
			t.Errorf("sample %s has no pinned verdict", name)
			continue
		}
		m, err := ParseFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range m.Check(DefaultConfig(), fixedNow) {
			if e.Line == 0 {
				t.Errorf("%s: %s has no line", name, e.Code)
			}
			got = append(got, e.Code+" "+e.Field)
		}
		if strings.Join(got, "\n") != strings.Join(w, "\n") {
			t.Errorf("%s:\ngot  %q\nwant %q", name, got, w)
		}
	}
}
