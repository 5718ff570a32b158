// Package sf1601 reads KOMBIT SF1601 "KombiPostAfsend" requests, so that a
// municipality's existing SF1601 integration (python-serviceplatformen,
// the PHP itk-dev/serviceplatformen behind OS2Forms, …) sends through
// posthub by changing one base URL. It owns the envelope only: the MeMo it
// carries is validated and accepted by the hub's one accept path, exactly
// as if it had been sent alone to the NgDP route.
//
// A kombi_request is
//
//	<kombi_request>
//	  <KombiValgKode>Digital Post|NemSMS|Fysisk Post|Automatisk Valg</KombiValgKode>
//	  <memo:Message …>…</memo:Message>
//	  [<ForsendelseISamling xmlns="urn:oio:fjernprint:1.0.0"><ForsendelseI>…</ForsendelseI></ForsendelseISamling>]
//	</kombi_request>
//
// with the wrapper in no namespace and its children in any order.
//
// What the Decoder guarantees:
//
//   - Streaming and bounded: it reads the body once, through a 16 KiB
//     buffer (64 KiB, memo.PrologLimit, for a request whose prolog is
//     longer), and never holds the MeMo: the Message's bytes go to the
//     writer the caller gives (a spool file, or memory for a small body) as
//     they arrive. The Message may be at most Limits.MaxMemo bytes, the
//     fjernprint part Limits.MaxPrint (it is held in memory), everything
//     else together (prolog, KombiValgKode, whitespace, comments)
//     Limits.MaxEnvelope, and elements nest at most Limits.MaxDepth deep.
//     Crossing a size bound is TooLarge, found the moment it is crossed.
//   - No DTD: the request's start goes through memo.CheckProlog, the
//     check a MeMo sent alone gets from memo's prescan, so both refuse the
//     same inputs with the same codes: any DOCTYPE (xml.doctype.not.allowed)
//     and any encoding but UTF-8 ("utf8", as Python's ElementTree writes
//     it, included; xml.encoding.not.supported), before a byte reaches
//     libxml2. The scanner is pure Go and refuses a DOCTYPE anywhere else
//     too; it expands no entities, and the documents it hands on carry none
//     that could be declared.
//   - The Message as if sent alone: real clients declare the MeMo
//     namespaces on <kombi_request>, not on the Message (ElementTree hoists
//     every declaration to the root). The Message is written out as a
//     standalone document whose start tag also carries the declarations in
//     scope from the wrapper that it does not make itself, inserted right
//     after its name; every other byte is the sender's. Its line numbers
//     are the request's minus Request.MessageLine-1, so an error's line can
//     be pointed back into what was sent. The same request always yields
//     the same bytes, so a client's retry is recognised as the same
//     letter.
//   - The fjernprint part likewise becomes a standalone document
//     (Request.Print), which PrintSchema validates against the OIO
//     fjernprint schemas (schemas.Fjernprint).
//   - Precise errors: one *hub.Error of code Invalid (or TooLarge) with
//     one field error whose code names the case — see the Code* constants
//     and, for XML-level problems, memo's xml.* codes.
package sf1601
