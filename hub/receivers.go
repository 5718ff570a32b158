package hub

// What every Store backend checks around receiver systems, so that the
// receiver rule (Registry) is enforced in one place: the rule itself is a
// ReceiverRule, and the store only makes its decision and write one step.

// ReceiverState is what ChangeReceivers writes for one system.
type ReceiverState struct {
	Active, Default bool
}

// CheckPlainCreate is what Orgs.CreateSystem refuses: a system without ID
// and an active receiver system, which joins through ChangeReceivers.
func CheckPlainCreate(s System) error {
	if s.ID == "" {
		return Errorf(Invalid, "system without ID")
	}
	if s.Role == RecipientSystem && s.Active {
		return Errorf(Invalid, "an active receiver system is added with ChangeReceivers, under the receiver rule")
	}
	return nil
}

// CheckPlainUpdate is what Orgs.UpdateSystem refuses: a change of what the
// receiver rule governs (old is the stored system).
func CheckPlainUpdate(old, s System) error {
	if s.Role != old.Role || s.Mailbox != old.Mailbox || s.Default != old.Default ||
		(s.Active != old.Active && (old.Role == RecipientSystem)) {
		return Errorf(Invalid, "system %s: role, mailbox, default and a receiver's active state change with ChangeReceivers, under the receiver rule", s.ID)
	}
	return nil
}

// CheckReceiverChange is what Orgs.ChangeReceivers refuses before it reads
// anything.
func CheckReceiverChange(org string, ch ReceiverChange) error {
	if org == "" || ch.Rule == nil {
		return Errorf(Invalid, "a receiver change needs an organisation and a rule")
	}
	if a := ch.Add; a != nil && (a.ID == "" || a.Role != RecipientSystem || a.OrgCVR != org) {
		return Errorf(Invalid, "system %q is not a receiver system of organisation %s", a.ID, org)
	}
	return nil
}

// PlanReceivers turns a rule's decision (next) about the active receivers
// into the writes it means: for each system whose state changes (and for
// add, when not nil) its new state. Invalid when next keeps a system that
// was not active, names one twice, or leaves add out.
func PlanReceivers(active, next []Receiver, add *System) (map[string]ReceiverState, error) {
	was := make(map[string]Receiver, len(active))
	for _, r := range active {
		was[r.ID] = r
	}
	plan := map[string]ReceiverState{}
	kept := make(map[string]bool, len(next))
	for _, r := range next {
		old, ok := was[r.ID]
		switch {
		case kept[r.ID]:
			return nil, Errorf(Invalid, "receiver rule: system %s named twice", r.ID)
		case add != nil && r.ID == add.ID:
			plan[r.ID] = ReceiverState{Active: true, Default: r.Default}
		case !ok:
			return nil, Errorf(Invalid, "receiver rule: system %s was not an active receiver system", r.ID)
		case old.Default != r.Default:
			plan[r.ID] = ReceiverState{Active: true, Default: r.Default}
		}
		kept[r.ID] = true
	}
	if add != nil && !kept[add.ID] {
		return nil, Errorf(Invalid, "receiver rule: the system being added (%s) was left out", add.ID)
	}
	for _, r := range active {
		if !kept[r.ID] {
			plan[r.ID] = ReceiverState{}
		}
	}
	return plan, nil
}
