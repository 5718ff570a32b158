package eventlog

// Tag is an event tag. Tags that exist in the national hub (NgDP's
// EventLogEventTag) carry its names; posthub's own additions say so.
type Tag string

// Tags of the sending side.
const (
	MemoSendReceived                      Tag = "MEMO_SEND_RECEIVED"
	MemoMassSendReceived                  Tag = "MEMO_MASS_SEND_RECEIVED"
	MemoSendValidated                     Tag = "MEMO_SEND_VALIDATED"
	MemoSendValidationFailed              Tag = "MEMO_SEND_VALIDATION_FAILED"
	MemoSendFailed                        Tag = "MEMO_SEND_FAILED"
	MemoSendReadyForFetch                 Tag = "MEMO_SEND_READY_FOR_FETCH"
	MemoSendFetchedByRecipientSystem      Tag = "MEMO_SEND_FETCHED_BY_RECIPIENT_SYSTEM"
	MemoSendSentToRecipientSystem         Tag = "MEMO_SEND_SENT_TO_RECIPIENT_SYSTEM"
	MemoSendSentToRecipientSystemFailed   Tag = "MEMO_SEND_SENT_TO_RECIPIENT_SYSTEM_FAILED"
	MemoTransformationFailed              Tag = "MEMO_TRANSFORMATION_FAILED"
	MemoAvailableToRecipient              Tag = "MEMO_AVAILABLE_TO_RECIPIENT"
	MemoSystemFetched                     Tag = "MEMO_SYSTEM_FETCHED"
	DelayedMemoSendValidatedAwaitingDelay Tag = "DELAYED_MEMO_SEND_VALIDATED_AWAITING_DELAY"
	DelayedMemoSendSent                   Tag = "DELAYED_MEMO_SEND_SENT"
	DelayedMemoMessageRecalled            Tag = "DELAYED_MEMO_MESSAGE_RECALLED"
	MemoMessageRecalled                   Tag = "MEMO_MESSAGE_RECALLED"
	MemoSendRecalled                      Tag = "MEMO_SEND_RECALLED"
	PhysicalLetterSent                    Tag = "PHYSICAL_LETTER_SENT"
	NemSMSSentSuccessfully                Tag = "NEM_SMS_SENT_SUCCESSFULLY"
	NemSMSSendFailed                      Tag = "NEM_SMS_SEND_FAILED"
	TechnicalReceiptSentToSenderSystem    Tag = "TECHNICAL_RECEIPT_SENT_TO_SENDER_SYSTEM"
	BusinessReceiptSendToSenderSystem     Tag = "BUSINESS_RECEIPT_SEND_TO_SENDER_SYSTEM"
)

// posthub's own sending-side tags (no NgDP equivalent).
const (
	MemoSendNotDelivered   Tag = "MEMO_SEND_NOT_DELIVERED"
	MemoSendQueuedForPrint Tag = "MEMO_SEND_QUEUED_FOR_PRINT"
	MemoSendQueuedForSMS   Tag = "MEMO_SEND_QUEUED_FOR_NEM_SMS"
	OutboxItemParked       Tag = "OUTBOX_ITEM_PARKED"
	// A print provider refused a letter (NgDP has NEM_SMS_SEND_FAILED for
	// SMS only). Both failure tags are written on an item's first failed
	// attempt and then at doubling intervals (attempts 2, 4, 8, …).
	PhysicalLetterSendFailed Tag = "PHYSICAL_LETTER_SEND_FAILED"
	// A deactivated receiver system's post returned to the mailbox.
	MemoSendReturnedToMailbox Tag = "MEMO_SEND_RETURNED_TO_MAILBOX"
)

// Tags of the receiving side and of reading.
const (
	MessageReceived Tag = "MESSAGE_RECEIVED"
	MessageRead     Tag = "MESSAGE_READ"
	MessageDeleted  Tag = "MESSAGE_DELETED"
	MessageMoved    Tag = "MESSAGE_MOVED"
	MailboxRead     Tag = "MAILBOX_READ"
)

// Tags of administration, systems and access.
const (
	SystemChanged               Tag = "SYSTEM_CHANGED"
	SystemFetchStarted          Tag = "SYSTEM_FETCH_STARTED"
	SystemFetchStopped          Tag = "SYSTEM_FETCH_STOPPED"
	SystemFetchFinished         Tag = "SYSTEM_FETCH_FINISHED"
	ContactPointChanged         Tag = "CONTACT_POINT_CHANGED"
	ContactGroupChanged         Tag = "CONTACT_GROUP_CHANGED"
	ContactCPRUpdated           Tag = "CONTACT_CPR_UPDATED"
	ContactCVRUpdated           Tag = "CONTACT_CVR_UPDATED"
	DigitalPostExempted         Tag = "DIGITAL_POST_EXEMPTED"
	DigitalPostRegistered       Tag = "DIGITAL_POST_REGISTERED"
	PrivilegesGranted           Tag = "PRIVILEGES_GRANTED"
	PrivilegesRevoked           Tag = "PRIVILEGES_REVOKED"
	PrivilegesGrantedOnBehalfOf Tag = "PRIVILEGES_GRANTED_ON_BEHALF_OF"
	PrivilegesRevokedOnBehalfOf Tag = "PRIVILEGES_REVOKED_ON_BEHALF_OF"
	IdentityRead                Tag = "IDENTITY_READ"
	IdentitySearches            Tag = "IDENTITY_SEARCHES"
	EventLogSearches            Tag = "EVENT_LOG_SEARCHES"
	StatisticsRead              Tag = "STATISTICS_READ"
	StatisticalReportDownloaded Tag = "STATISTICAL_REPORT_DOWNLOADED"
)

// posthub's own event-log tags.
const (
	// EventLogCheckpoint is a signed checkpoint sealed into the chain; its
	// Detail carries seq, hash, time, keyId and signature of the entry
	// before it. Only auditors see it.
	EventLogCheckpoint Tag = "EVENT_LOG_CHECKPOINT"
	// EventLogExported records an auditor's export.
	EventLogExported Tag = "EVENT_LOG_EXPORTED"
	// EventLogRetention is a signed retention record (RetentionRecord),
	// sealed before a retention run deletes entries; only auditors see it.
	EventLogRetention Tag = "EVENT_LOG_RETENTION"
)

// Detail keys with a meaning to the event log itself.
const (
	// DetailSenderOrg names the sender organisation on a read event
	// (MESSAGE_READ, MAILBOX_READ). The sender is deliberately NOT in
	// Orgs: a sender learns that its letter was delivered or fetched,
	// never whether it was read. Only auditors see the detail.
	DetailSenderOrg = "senderOrg"
	// DetailSearchedOrg names the organisation whose log was searched on
	// an EVENT_LOG_SEARCHES event.
	DetailSearchedOrg = "searchedOrg"
)

// readTags are the tags a sender organisation never sees.
var readTags = map[string]bool{string(MessageRead): true, string(MailboxRead): true}

// IsReadTag reports whether tag records that a recipient read something,
// which the sender may never learn.
func IsReadTag(tag string) bool { return readTags[tag] }

// auditorOnly are tags no organisation sees, whatever their Orgs say:
// the log's own bookkeeping. Searches are auditor-only too, or a system
// following its feed would see its own searches and never come to rest.
var auditorOnly = map[string]bool{string(EventLogCheckpoint): true, string(EventLogSearches): true,
	string(EventLogExported): true, string(EventLogRetention): true}
