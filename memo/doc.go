// Package memo owns the MeMo document: its Go model, parsing, XSD
// validation, the hub's business rules, building, rendering and conversion
// between MeMo 1.1 and 1.2. Everything that reads a MeMo from outside goes
// through a Validator, which guarantees:
//
//   - Size: a document larger than Config.MaxSize (default 99.5 MiB) is
//     refused with TooLarge (code memo.too.large). Spool and
//     ValidateReader stop reading one byte past the limit and never hold
//     the body in memory; they write it to a file while hashing it.
//   - No DTD: a pure-Go prescan reads only the prolog and the root start
//     tag (at most 64 KiB) before libxml2 sees a byte, and refuses any
//     DOCTYPE (xml.doctype.not.allowed) and any encoding but UTF-8. Without
//     a DTD there are no entity declarations, so no entity expansion
//     (billion laughs) and no external entities (XXE). libxml2 is in any
//     case run without XML_PARSE_NOENT, DTDLOAD, DTDATTR, DTDVALID or
//     XINCLUDE.
//   - No network: documents are parsed with XML_PARSE_NONET, libxml2's
//     entity loader is set process-wide to xmlNoNetExternalEntityLoader,
//     and the schemas are compiled from the embedded files (schemas.FS),
//     whose imports must all be relative paths to other embedded files.
//   - Version selection: the root must be Message in namespace
//     https://DigitalPost.dk/MeMo-1 (any prefix, or the default namespace;
//     else memo.root.invalid); its memoVersion picks the schema: 1.1 or 1.2.
//     A missing memoVersion is memo.version.missing, any other value (1.0
//     included) memo.version.not.supported.
//   - Precise errors: an invalid document yields one *hub.Error of code
//     Invalid whose Fields list every problem (capped at 100), each with a
//     stable code (schema.element.unexpected, schema.element.missing,
//     schema.value.invalid, schema.attribute.invalid|missing|unexpected,
//     schema.invalid, xml.not.well.formed, or a business rule's code), the
//     element path (/Message/MessageHeader/messageUUID, /Message/@foo) and
//     the line.
//
// # Why our own cgo and not lestrrat-go/libxml2
//
// The XSD engine is a thin cgo layer over the system libxml2 (xsd.go).
// lestrrat-go/libxml2's Parse/ParseString copy the document into a Go string
// and then into C strings, so a 99 MB MeMo peaked near 720 MB and took
// about twice xmllint's time. Spooled bodies are on disk anyway (size limit,
// hash, blob store), so libxml2 parses the file in place from its
// descriptor (xmlCtxtReadFd) and validates the tree with a schema compiled
// once per Validator; memory and time stay within reach of
// `xmllint --huge --schema`. Validator.Spool goes one step further: once
// the prescan has passed on the body's first bytes, libxml2 reads the spool
// file while it is still being written (a read callback that waits at the
// written end), so receiving and parsing a large body overlap. Compiling the schema in the same layer avoids
// mixing two bindings' pointers, and lestrrat-go/libxml2 is not used.
//
// A letter held in memory (ValidateBytes, the accept path of bodies up to
// a MiB) is parsed once: libxml2 validates it in one streaming pass
// without a tree, recording where each element's tags are, and the Go
// model is read along those records (recorded.go); only a refused letter
// is parsed again, on a tree, for its precise errors. Spooled bodies keep
// the tree and the Go parser running beside it on the file, which is what
// bounds a 99 MB letter's memory.
//
// Concurrency: the compiled schemas are read-only while validating and
// shared by all goroutines; each call has its own parser context,
// validation context and error collector (passed to libxml2 as the
// callbacks' userData, never a global).
package memo
