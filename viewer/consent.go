package viewer

import (
	"context"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/memo"
)

// Consent-based access, in the style of the Norwegian "Min side"
// integration: a citizen grants an authority read access to the letters
// that authority sent them (scope OWN_LETTERS, never other senders'
// letters); the authority's systems can then list and fetch those letters
// until the consent is revoked. Letters the citizen deleted stay visible
// to the authority until they are purged: the authority sent them. Every
// access is logged as CONSENT_ACCESS before the answer; if that entry
// cannot be written the access is refused.

// Grant records the citizen's consent for authority org.
func (s *Service) Grant(ctx context.Context, p Person, org string) (hub.Consent, error) {
	if p.CPR == "" {
		return hub.Consent{}, hub.Errorf(hub.Forbidden, "only a citizen grants consent")
	}
	o, err := s.Store.GetOrg(ctx, org)
	if err != nil {
		return hub.Consent{}, err
	}
	if o.Kind != hub.Authority {
		return hub.Consent{}, hub.Errorf(hub.Invalid, "consent is granted to authorities; %s is a company", org)
	}
	c := hub.Consent{Citizen: p.CPR, OrgCVR: org, Scope: hub.ConsentOwnLetters, Granted: s.now()}
	if err := s.Mailboxes.PutConsent(ctx, c); err != nil {
		return hub.Consent{}, err
	}
	_ = s.emit(ctx, hub.Event{Tag: TagConsentGranted, Actor: p.Actor(), Orgs: []string{org}, Party: p.CPR,
		Detail: map[string]string{"scope": string(c.Scope)}})
	return c, nil
}

// Revoke ends the citizen's consent for org. NotFound when there is none.
func (s *Service) Revoke(ctx context.Context, p Person, org string) (hub.Consent, error) {
	if p.CPR == "" {
		return hub.Consent{}, hub.Errorf(hub.Forbidden, "only a citizen revokes consent")
	}
	c, err := s.Mailboxes.GetConsent(ctx, p.CPR, org)
	if err != nil {
		return hub.Consent{}, err
	}
	if !c.Active() {
		return c, nil
	}
	c.Revoked = s.now()
	if err := s.Mailboxes.PutConsent(ctx, c); err != nil {
		return hub.Consent{}, err
	}
	_ = s.emit(ctx, hub.Event{Tag: TagConsentRevoked, Actor: p.Actor(), Orgs: []string{org}, Party: p.CPR})
	return c, nil
}

// Consents lists the citizen's consents.
func (s *Service) Consents(ctx context.Context, p Person) ([]hub.Consent, error) {
	if p.CPR == "" {
		return nil, hub.Errorf(hub.Forbidden, "only citizens have consents")
	}
	cs, err := s.Mailboxes.ListConsents(ctx, p.CPR, "")
	if cs == nil {
		cs = []hub.Consent{}
	}
	return cs, err
}

// consented checks that citizen has an active consent for the system's
// organisation and logs the access; the log entry is written first.
func (s *Service) consented(ctx context.Context, sys hub.System, citizen, what, uuid string) error {
	c, err := s.Mailboxes.GetConsent(ctx, citizen, sys.OrgCVR)
	if hub.ErrorCode(err) == hub.NotFound || (err == nil && !c.Active()) {
		return hub.Errorf(hub.Forbidden, "the citizen has not given %s consent", sys.OrgCVR)
	}
	if err != nil {
		return err
	}
	if err := s.emit(ctx, hub.Event{Tag: TagConsentAccess, Actor: sys.ID, SystemID: sys.ID, Orgs: []string{sys.OrgCVR},
		Party: citizen, MessageUUID: uuid, Detail: map[string]string{"access": what}}); err != nil {
		return hub.Wrap(hub.Unavailable, err, "access log unavailable; access refused")
	}
	return nil
}

// ConsentedLetters lists the letters org (the system's organisation) sent
// to citizen, under the citizen's consent.
func (s *Service) ConsentedLetters(ctx context.Context, sys hub.System, citizen string, q Query) (Page, error) {
	if err := s.consented(ctx, sys, citizen, "list", ""); err != nil {
		return Page{}, err
	}
	q.Sender = sys.OrgCVR
	if q.Folder == "" {
		q.Folder = FolderAll
	}
	return s.List(ctx, Mailbox{Owner: citizen}, q)
}

// ConsentedLetter returns one letter org sent to citizen, under consent,
// parsed. NotFound for letters of other senders.
func (s *Service) ConsentedLetter(ctx context.Context, sys hub.System, citizen, uuid, what string) (Letter, *memo.Message, error) {
	l, err := s.ConsentedCheck(ctx, sys, citizen, uuid, what)
	if err != nil {
		return Letter{}, nil, err
	}
	msg, err := s.Content(ctx, uuid)
	return l, msg, err
}

// ConsentedCheck is ConsentedLetter without the parse, for a caller that
// passes the MeMo on as it is: the consent checked and logged (what), the
// letter found and org's.
func (s *Service) ConsentedCheck(ctx context.Context, sys hub.System, citizen, uuid, what string) (Letter, error) {
	if err := s.consented(ctx, sys, citizen, what, uuid); err != nil {
		return Letter{}, err
	}
	l, err := s.Get(ctx, Mailbox{Owner: citizen}, uuid)
	if err != nil {
		return Letter{}, err
	}
	if l.SenderCVR != sys.OrgCVR {
		return Letter{}, hub.Errorf(hub.NotFound, "no letter %s from %s to this citizen", uuid, sys.OrgCVR)
	}
	return l, nil
}
