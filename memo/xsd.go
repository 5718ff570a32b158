package memo

/*
#cgo pkg-config: libxml-2.0
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <libxml/parser.h>
#include <libxml/parserInternals.h>
#include <libxml/SAX2.h>
#include <libxml/tree.h>
#include <libxml/xmlerror.h>
#include <libxml/xmlschemas.h>

// One collected problem. msg and path are malloc'd and freed by ph_errs_free.
typedef struct {
	int domain;
	int code;
	int line;
	int attr;   // the problem is about an attribute node
	char *msg;
	char *path;
} ph_err;

#define PH_MAX_ERRS 100

// ph_rec records, while libxml2 parses a document, where each element's
// start and end tags end (byte offsets into the document) and its
// namespace and local name, so that the Go model can be built from the
// document's bytes without tokenizing its markup a second time (see
// events.go). Records, packed little-endian:
//
//	1 uri(u8) len(u16) off(i64) name   an element's start tag, off at its '>' or '/'
//	2 off(i64)                         an end tag ("</x>" or the "/>" of "<x/>"), off past its '>'
//	3 len(u32) uri                     a namespace first used by the next element: uri index nuris
//
// uri 0 is no namespace. Anything the format cannot carry (a name over
// 65535 bytes, more than PH_MAX_URIS namespaces, no memory) sets failed,
// and the Go side then reads the document itself, as before.
#define PH_MAX_URIS 32

// PH_REC_KEEP is the most record memory an idle context keeps: a letter's
// records take a few KiB; a pathological one's are not kept.
#define PH_REC_KEEP (256 << 10)

typedef struct {
	unsigned char *b;
	size_t n, cap;
	int failed;
	int nuris;
	const xmlChar *uris[PH_MAX_URIS];
} ph_rec;

// A per-call collector; its address is the userData of the error callbacks,
// so concurrent validations never share state. The problems' array is
// malloc'd at the first problem (and freed by ph_errs_free): a valid
// document, the common case, costs no room for a hundred problems, and the
// collector itself is small enough to live in a ph_ctx or on the Go heap.
typedef struct {
	int n;
	int dropped;
	ph_rec *rec; // when not NULL, the elements are recorded into it
	int bad;     // ph_validate_stream: problems seen (not collected)
	ph_err *errs; // PH_MAX_ERRS entries, or NULL before the first problem
} ph_errs;

static unsigned char *ph_rec_room(ph_rec *r, size_t need) {
	if (r->failed) return NULL;
	if (r->cap - r->n < need) {
		size_t cap = r->cap ? r->cap : 4096;
		while (cap - r->n < need) cap *= 2;
		unsigned char *b = realloc(r->b, cap);
		if (b == NULL) {
			r->failed = 1;
			return NULL;
		}
		r->b = b;
		r->cap = cap;
	}
	unsigned char *p = r->b + r->n;
	r->n += need;
	return p;
}

static void ph_put64(unsigned char *p, long long v) {
	for (int i = 0; i < 8; i++) p[i] = (unsigned char)((unsigned long long)v >> (8 * i));
}

static void ph_record_start(xmlParserCtxtPtr ctxt, const xmlChar *localname, const xmlChar *URI) {
	ph_errs *e = (ph_errs *)ctxt->_private;
	if (e == NULL || e->rec == NULL || e->rec->failed) return;
	ph_rec *r = e->rec;
	int idx = 0;
	if (URI != NULL) {
		for (int i = 0; i < r->nuris; i++) {
			if (r->uris[i] == URI) {
				idx = i + 1;
				break;
			}
		}
		if (idx == 0) {
			if (r->nuris == PH_MAX_URIS) {
				r->failed = 1;
				return;
			}
			size_t ul = strlen((const char *)URI);
			unsigned char *p = ph_rec_room(r, 5 + ul);
			if (p == NULL) return;
			p[0] = 3;
			p[1] = (unsigned char)ul; p[2] = (unsigned char)(ul >> 8); p[3] = (unsigned char)(ul >> 16); p[4] = (unsigned char)(ul >> 24);
			memcpy(p + 5, URI, ul);
			r->uris[r->nuris++] = URI;
			idx = r->nuris;
		}
	}
	size_t nl = strlen((const char *)localname);
	if (nl > 65535) {
		r->failed = 1;
		return;
	}
	unsigned char *p = ph_rec_room(r, 12 + nl);
	if (p == NULL) return;
	p[0] = 1;
	p[1] = (unsigned char)idx;
	p[2] = (unsigned char)nl; p[3] = (unsigned char)(nl >> 8);
	ph_put64(p + 4, xmlByteConsumed(ctxt));
	memcpy(p + 12, localname, nl);
}

static void ph_record_end(xmlParserCtxtPtr ctxt) {
	ph_errs *e = (ph_errs *)ctxt->_private;
	if (e == NULL || e->rec == NULL || e->rec->failed) return;
	unsigned char *p = ph_rec_room(e->rec, 9);
	if (p == NULL) return;
	p[0] = 2;
	ph_put64(p + 1, xmlByteConsumed(ctxt));
}

// The tree-building handlers: libxml2's own, then the record.
static void ph_rec_start(void *ctx, const xmlChar *localname, const xmlChar *prefix, const xmlChar *URI,
		int nb_namespaces, const xmlChar **namespaces, int nb_attributes, int nb_defaulted, const xmlChar **attributes) {
	xmlSAX2StartElementNs(ctx, localname, prefix, URI, nb_namespaces, namespaces, nb_attributes, nb_defaulted, attributes);
	ph_record_start((xmlParserCtxtPtr)ctx, localname, URI);
}

static void ph_rec_end(void *ctx, const xmlChar *localname, const xmlChar *prefix, const xmlChar *URI) {
	xmlSAX2EndElementNs(ctx, localname, prefix, URI);
	ph_record_end((xmlParserCtxtPtr)ctx);
}

// The streaming handlers (ph_validate_stream): no tree, only the record.
static void ph_stream_start(void *ctx, const xmlChar *localname, const xmlChar *prefix, const xmlChar *URI,
		int nb_namespaces, const xmlChar **namespaces, int nb_attributes, int nb_defaulted, const xmlChar **attributes) {
	ph_record_start((xmlParserCtxtPtr)ctx, localname, URI);
}

static void ph_stream_end(void *ctx, const xmlChar *localname, const xmlChar *prefix, const xmlChar *URI) {
	ph_record_end((xmlParserCtxtPtr)ctx);
}

// Problems met while streaming are only counted: a document with any
// is validated again on a tree (ph_validate), whose errors are reported.
// The plugged validator hands parser errors its own user data, so the
// parser context comes from the error.
static void ph_stream_parser_error(void *data, xmlErrorPtr e) {
	if (e == NULL || e->level < XML_ERR_ERROR || e->ctxt == NULL) return;
	ph_errs *c = (ph_errs *)((xmlParserCtxtPtr)e->ctxt)->_private;
	if (c != NULL) c->bad++;
}

static void ph_stream_schema_error(void *data, xmlErrorPtr e) {
	if (e == NULL || e->level < XML_ERR_ERROR) return;
	((ph_errs *)data)->bad++;
}

// ph_stream_sax is the user handler under the plugged validator:
// element records only. Written once by ph_init.
static xmlSAXHandler ph_stream_sax;

// ph_path writes the element path of node ("/Message/MessageHeader/label",
// "/Message/@memoVersion"), using local names. Returns malloc'd memory.
static char *ph_path(xmlNodePtr node) {
	size_t len = 0;
	int depth = 0;
	for (xmlNodePtr p = node; p != NULL; p = p->parent) {
		if (p->type == XML_ELEMENT_NODE || p->type == XML_ATTRIBUTE_NODE) {
			len += strlen((const char *)p->name) + 2;
			depth++;
		}
	}
	char *buf = malloc(len + 1);
	if (buf == NULL) return NULL;
	buf[len] = 0;
	size_t end = len;
	for (xmlNodePtr p = node; p != NULL; p = p->parent) {
		if (p->type != XML_ELEMENT_NODE && p->type != XML_ATTRIBUTE_NODE) continue;
		size_t n = strlen((const char *)p->name);
		end -= n;
		memcpy(buf + end, p->name, n);
		if (p->type == XML_ATTRIBUTE_NODE) buf[--end] = '@';
		buf[--end] = '/';
	}
	// end > 0 when names had no '@'; shift the string to the front.
	if (end > 0) memmove(buf, buf + end, len - end + 1);
	return buf;
}

static void ph_collect(ph_errs *c, xmlErrorPtr e) {
	if (c == NULL || e == NULL || e->level < XML_ERR_ERROR) return;
	if (c->n >= PH_MAX_ERRS) { c->dropped++; return; }
	if (c->errs == NULL && (c->errs = calloc(PH_MAX_ERRS, sizeof(ph_err))) == NULL) { c->dropped++; return; }
	ph_err *r = &c->errs[c->n++];
	r->domain = e->domain;
	r->code = e->code;
	r->line = e->line;
	r->attr = 0;
	r->msg = e->message ? strdup(e->message) : NULL;
	r->path = NULL;
	xmlNodePtr node = (xmlNodePtr)e->node;
	// Only the schema validator's nodes are ours to walk: they belong to
	// the document being validated, alive for the whole call.
	if (node != NULL && e->domain == XML_FROM_SCHEMASV) {
		r->attr = node->type == XML_ATTRIBUTE_NODE;
		r->path = ph_path(node);
		if (r->line <= 0) {
			xmlNodePtr el = r->attr ? node->parent : node;
			if (el != NULL) r->line = (int)xmlGetLineNo(el);
		}
	}
}

// Parser errors reach the SAX serror hook with the parser context as data
// (its userData must stay the context for SAX2 to work), so the collector
// rides in ctxt->_private.
static void ph_parser_error(void *data, xmlErrorPtr e) {
	xmlParserCtxtPtr ctxt = (xmlParserCtxtPtr)data;
	if (ctxt != NULL) ph_collect((ph_errs *)ctxt->_private, e);
}

static void ph_schema_error(void *data, xmlErrorPtr e) {
	ph_collect((ph_errs *)data, e);
}

// ph_errs_free frees the collected problems; the collector itself is Go
// memory (newErrs) or part of a ph_ctx.
static void ph_errs_free(ph_errs *c) {
	if (c == NULL) return;
	for (int i = 0; i < c->n; i++) {
		free(c->errs[i].msg);
		free(c->errs[i].path);
	}
	free(c->errs);
	c->errs = NULL;
	c->n = 0;
	c->dropped = 0;
}

// The parse options for documents: XML_PARSE_HUGE lifts the 10 MB text-node
// limit (a MeMo carries its files as base64 text); NONET forbids network
// access; BIG_LINES keeps line numbers past 65535 exact; COMPACT saves
// memory on small text nodes. Deliberately absent: NOENT (entity
// substitution), DTDLOAD, DTDATTR, DTDVALID, XINCLUDE, RECOVER, NOBLANKS.
static const int ph_doc_options = XML_PARSE_HUGE | XML_PARSE_NONET | XML_PARSE_BIG_LINES | XML_PARSE_COMPACT;

// A file that is still being written, read by libxml2 as it grows: the
// writer announces how many bytes the file holds (ph_feed_grow) and finally
// whether it is complete (ph_feed_end); the reader blocks at the announced
// end until there is more. It reads with pread on its own descriptor, so
// the writer's descriptor and file offset are left alone.
typedef struct {
	pthread_mutex_t mu;
	pthread_cond_t more;
	long long avail;  // bytes the file holds, as announced
	int state;        // 0 still growing, 1 complete, -1 abandoned
	int fd;
	long long off;    // the reader's position; touched by the reader only
} ph_feed;

static ph_feed *ph_feed_new(int fd) {
	ph_feed *f = calloc(1, sizeof(ph_feed));
	if (f == NULL) return NULL;
	pthread_mutex_init(&f->mu, NULL);
	pthread_cond_init(&f->more, NULL);
	f->fd = fd;
	return f;
}

static void ph_feed_grow(ph_feed *f, long long avail) {
	pthread_mutex_lock(&f->mu);
	f->avail = avail;
	pthread_cond_signal(&f->more);
	pthread_mutex_unlock(&f->mu);
}

static void ph_feed_end(ph_feed *f, int state) {
	pthread_mutex_lock(&f->mu);
	f->state = state;
	pthread_cond_signal(&f->more);
	pthread_mutex_unlock(&f->mu);
}

static void ph_feed_free(ph_feed *f) {
	pthread_cond_destroy(&f->more);
	pthread_mutex_destroy(&f->mu);
	free(f);
}

// ph_feed_read is libxml2's read callback: 0 at the end of a complete
// file, -1 when the writer abandoned it or the read failed.
static int ph_feed_read(void *ctx, char *buf, int len) {
	ph_feed *f = ctx;
	pthread_mutex_lock(&f->mu);
	while (f->off >= f->avail && f->state == 0) pthread_cond_wait(&f->more, &f->mu);
	long long n = f->avail - f->off;
	int state = f->state;
	pthread_mutex_unlock(&f->mu);
	if (state < 0) return -1;
	if (n <= 0) return 0;
	if (n > len) n = len;
	ssize_t r = pread(f->fd, buf, (size_t)n, (off_t)f->off);
	if (r <= 0) return -1; // the announced bytes must be there
	f->off += r;
	return (int)r;
}

// ph_ctx is a parser context and a validation context for one schema,
// reused from document to document: a new pair per document costs about a
// fifth of a small MeMo's parse and validation (SAX handler, stacks,
// dictionary, validation state).
typedef struct {
	xmlParserCtxtPtr p;
	xmlSchemaValidCtxtPtr v;
	int uses;
	ph_rec rec; // the last document's records, when asked for
	ph_errs stream; // ph_validate_stream's collector, which only counts
} ph_ctx;

static void ph_ctx_free(ph_ctx *c) {
	if (c == NULL) return;
	free(c->rec.b);
	if (c->p != NULL) xmlFreeParserCtxt(c->p);
	if (c->v != NULL) xmlSchemaFreeValidCtxt(c->v);
	free(c);
}

// ph_ctx_trim drops a large record buffer before c goes idle.
static void ph_ctx_trim(ph_ctx *c) {
	if (c->rec.cap > PH_REC_KEEP) {
		free(c->rec.b);
		c->rec.b = NULL;
		c->rec.cap = 0;
		c->rec.n = 0;
	}
}

static ph_ctx *ph_ctx_new(xmlSchemaPtr schema) {
	ph_ctx *c = calloc(1, sizeof *c);
	if (c == NULL) return NULL;
	c->p = xmlNewParserCtxt();
	c->v = xmlSchemaNewValidCtxt(schema);
	if (c->p == NULL || c->v == NULL) {
		ph_ctx_free(c);
		return NULL;
	}
	c->p->sax->serror = ph_parser_error;
	return c;
}

// ph_validate parses a document from feed, from fd (when buf is NULL) or
// from buf with the contexts c and validates it against their schema,
// collecting every problem into errs. Returns 0 when valid, 1 when not
// well-formed, 2 when schema-invalid, -1 on an internal failure (no memory,
// abandoned feed). Each xmlCtxtRead* resets c->p first; the caller reuses c
// only after a 0.
static int ph_validate(ph_ctx *c, ph_feed *feed, int fd, const char *buf, int len, int record, ph_errs *errs) {
	xmlParserCtxtPtr pctxt = c->p;
	c->uses++;
	pctxt->_private = errs;
	// Recording hooks in only when asked for, so that the other paths
	// run libxml2's own handlers untouched.
	if (record) {
		c->rec.n = 0;
		c->rec.failed = 0;
		c->rec.nuris = 0;
		errs->rec = &c->rec;
		pctxt->sax->startElementNs = ph_rec_start;
		pctxt->sax->endElementNs = ph_rec_end;
	} else {
		errs->rec = NULL;
		pctxt->sax->startElementNs = xmlSAX2StartElementNs;
		pctxt->sax->endElementNs = xmlSAX2EndElementNs;
	}
	xmlDocPtr doc;
	if (feed != NULL) {
		doc = xmlCtxtReadIO(pctxt, ph_feed_read, NULL, feed, "memo.xml", NULL, ph_doc_options);
	} else if (buf != NULL) {
		doc = xmlCtxtReadMemory(pctxt, buf, len, "memo.xml", NULL, ph_doc_options);
	} else {
		doc = xmlCtxtReadFd(pctxt, fd, "memo.xml", NULL, ph_doc_options);
	}
	int nsok = pctxt->nsWellFormed;
	pctxt->_private = NULL;
	if (doc == NULL) return errs->n > 0 ? 1 : -1;
	if (!nsok || errs->n > 0) {
		xmlFreeDoc(doc);
		return 1;
	}
	xmlSchemaSetValidStructuredErrors(c->v, ph_schema_error, errs);
	int rc = xmlSchemaValidateDoc(c->v, doc);
	xmlSchemaSetValidStructuredErrors(c->v, NULL, NULL);
	xmlFreeDoc(doc);
	if (rc == 0) return 0;
	return rc > 0 || errs->n > 0 ? 2 : -1;
}

// ph_validate_stream parses buf and validates it in one pass, without a
// tree: libxml2's validator rides on the parser's SAX events
// (xmlSchemaSAXPlug) and the elements are recorded into c->rec. Returns 0
// when the document is well-formed and valid, 1 when anything at all was
// wrong, -1 when the validator could not be plugged. On anything but 0
// the caller validates the document again with ph_validate, on a fresh
// context, so that refusals carry the tree's element paths and lines.
// Problems are only counted, in the context's own collector.
static int ph_validate_stream(ph_ctx *c, const char *buf, int len) {
	ph_errs *errs = &c->stream;
	xmlParserCtxtPtr pctxt = c->p;
	c->uses++;
	c->rec.n = 0;
	c->rec.failed = 0;
	c->rec.nuris = 0;
	errs->rec = &c->rec;
	errs->bad = 0;
	xmlSAXHandlerPtr own = pctxt->sax;
	void *ud = pctxt->userData;
	pctxt->sax = &ph_stream_sax;
	xmlSchemaSAXPlugPtr plug = xmlSchemaSAXPlug(c->v, &pctxt->sax, &pctxt->userData);
	if (plug == NULL) {
		pctxt->sax = own;
		pctxt->userData = ud;
		return -1;
	}
	pctxt->sax->serror = ph_stream_parser_error;
	pctxt->_private = errs;
	xmlSchemaSetValidStructuredErrors(c->v, ph_stream_schema_error, errs);
	xmlDocPtr doc = xmlCtxtReadMemory(pctxt, buf, len, "memo.xml", NULL, ph_doc_options);
	int ok = pctxt->wellFormed && pctxt->nsWellFormed && xmlSchemaIsValid(c->v) == 1 && errs->bad == 0;
	xmlSchemaSAXUnplug(plug);
	xmlSchemaSetValidStructuredErrors(c->v, NULL, NULL);
	pctxt->sax = own;
	pctxt->userData = ud;
	pctxt->_private = NULL;
	if (doc != NULL) xmlFreeDoc(doc);
	return ok ? 0 : 1;
}

// ph_compile compiles the schema at path, collecting problems into errs.
static xmlSchemaPtr ph_compile(const char *path, ph_errs *errs) {
	xmlSchemaParserCtxtPtr pctxt = xmlSchemaNewParserCtxt(path);
	if (pctxt == NULL) return NULL;
	xmlSchemaSetParserStructuredErrors(pctxt, ph_schema_error, errs);
	xmlSchemaPtr s = xmlSchemaParse(pctxt);
	xmlSchemaFreeParserCtxt(pctxt);
	return s;
}

// ph_init readies libxml2 for use from many threads and makes it refuse
// network access for every load it does in this process, including the
// schema imports (a belt to go with the braces of relative-only imports).
static void ph_init(void) {
	xmlInitParser();
	memset(&ph_stream_sax, 0, sizeof ph_stream_sax);
	ph_stream_sax.initialized = XML_SAX2_MAGIC;
	ph_stream_sax.startElementNs = ph_stream_start;
	ph_stream_sax.endElementNs = ph_stream_end;
	xmlSetExternalEntityLoader(xmlNoNetExternalEntityLoader);
}
*/
import "C"

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"unsafe"

	"github.com/posthub/posthub/hub"
	"github.com/posthub/posthub/schemas"
)

// maxFieldErrors caps how many problems one document reports; a broken
// generator repeating the same mistake a million times gets the first 100.
const maxFieldErrors = C.PH_MAX_ERRS

var initOnce sync.Once

func initLibxml2() { initOnce.Do(func() { C.ph_init() }) }

// xsdSchema is one compiled MeMo schema. The compiled form is read-only
// while validating, so one is shared by all goroutines; each validation has
// its own parser and validation context.
type xsdSchema struct {
	version string
	ptr     C.xmlSchemaPtr
	// idle holds contexts for reuse (see ph_ctx); a validation takes one or
	// makes one, and gives it back only after a valid document.
	idle chan *C.ph_ctx
}

// ctxReuses is how many documents one ph_ctx parses before it is replaced,
// so that its dictionary (names and short strings it interned) stays small.
const ctxReuses = 1000

func (s *xsdSchema) ctx() (*C.ph_ctx, error) {
	select {
	case c := <-s.idle:
		return c, nil
	default:
	}
	c := C.ph_ctx_new(s.ptr)
	if c == nil {
		return nil, fmt.Errorf("memo: out of memory")
	}
	return c, nil
}

func (s *xsdSchema) done(c *C.ph_ctx, rc C.int) {
	if rc == xsdValid && c.uses < ctxReuses {
		C.ph_ctx_trim(c)
		select {
		case s.idle <- c:
			return
		default:
		}
	}
	C.ph_ctx_free(c)
}

// run validates with a context from the pool. When valid is not nil and
// the document is valid, valid is called with the element records libxml2
// made while parsing it (nil when it could not make them); they are C
// memory of the context and valid must not keep them.
func (s *xsdSchema) run(feed *C.ph_feed, fd int, b []byte, valid func(records []byte)) ([]hub.FieldError, error) {
	c, err := s.ctx()
	if err != nil {
		return nil, err
	}
	if valid != nil && b != nil {
		// One pass without a tree for the common, valid document.
		rc := C.ph_validate_stream(c, (*C.char)(unsafe.Pointer(&b[0])), C.int(len(b)))
		if rc == xsdValid {
			var records []byte
			if c.rec.failed == 0 && c.rec.n > 0 {
				records = unsafe.Slice((*byte)(unsafe.Pointer(c.rec.b)), int(c.rec.n))
			}
			valid(records)
			s.done(c, rc)
			return nil, nil
		}
		// The tree's validation says what is wrong, on a context that
		// has not seen this document.
		C.ph_ctx_free(c)
		if c, err = s.ctx(); err != nil {
			return nil, err
		}
	}
	errs := newErrs()
	defer C.ph_errs_free(errs)
	record := C.int(0)
	if valid != nil {
		record = 1
	}
	var rc C.int
	if b != nil {
		// libxml2 only reads b during the call and keeps no pointer to it.
		rc = C.ph_validate(c, feed, C.int(fd), (*C.char)(unsafe.Pointer(&b[0])), C.int(len(b)), record, errs)
	} else {
		rc = C.ph_validate(c, feed, C.int(fd), nil, 0, record, errs)
	}
	if rc == xsdValid && valid != nil {
		// The context is ours until done: its records stay put.
		var records []byte
		if c.rec.failed == 0 && c.rec.n > 0 {
			records = unsafe.Slice((*byte)(unsafe.Pointer(c.rec.b)), int(c.rec.n))
		}
		valid(records)
	}
	s.done(c, rc)
	return outcome(rc, errs)
}

var schemaLocation = regexp.MustCompile(`schemaLocation\s*=\s*["']([^"']*)["']`)

// compileSchemas compiles every supported version's MeMo schema from the
// embedded files (writeSchemaFiles says how the imports stay on them).
func compileSchemas() (map[string]*xsdSchema, error) {
	initLibxml2()
	dir, err := writeSchemaFiles(isMeMoSchemaFile)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	out := map[string]*xsdSchema{}
	for _, v := range SupportedVersions {
		core, ok := schemas.Core[v]
		if !ok {
			freeSchemas(out)
			return nil, fmt.Errorf("memo: no embedded schema for memoVersion %s", v)
		}
		s, err := compileSchema(filepath.Join(dir, filepath.FromSlash(core)))
		if err != nil {
			freeSchemas(out)
			return nil, fmt.Errorf("memo: compile MeMo %s schema: %w", v, err)
		}
		s.version = v
		out[v] = s
	}
	return out, nil
}

// isMeMoSchemaFile tells the MeMo schemas (the files at the top of
// schemas.FS and in Version1.2/) from the other embedded schemas, which
// CompileSchema compiles.
func isMeMoSchemaFile(path string) bool {
	return !strings.Contains(path, "/") || strings.HasPrefix(path, "Version1.2/")
}

// writeSchemaFiles writes the embedded schema files for which keep is true
// to a new private temporary directory, which the caller removes once
// libxml2 has compiled from it: libxml2 resolves imports ("../MeMo_kle.xsd")
// relative to the file it reads. Every schemaLocation must be a relative
// path to another embedded file, so the schema compiler can never reach
// the network or the rest of the disk.
func writeSchemaFiles(keep func(path string) bool) (string, error) {
	dir, err := os.MkdirTemp("", "posthub-xsd-")
	if err != nil {
		return "", fmt.Errorf("memo: schema dir: %w", err)
	}
	err = fs.WalkDir(schemas.FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !keep(path) {
			return err
		}
		b, err := schemas.FS.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range schemaLocation.FindAllSubmatch(b, -1) {
			loc := string(m[1])
			if strings.Contains(loc, ":") || strings.HasPrefix(loc, "/") {
				return fmt.Errorf("%s imports %q: only relative imports of embedded files are allowed", path, loc)
			}
			if _, err := fs.Stat(schemas.FS, filepath.ToSlash(filepath.Join(filepath.Dir(path), loc))); err != nil {
				return fmt.Errorf("%s imports %q, which is not embedded", path, loc)
			}
		}
		dst := filepath.Join(dir, filepath.FromSlash(path))
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o600)
	})
	if err != nil {
		os.RemoveAll(dir)
		return "", fmt.Errorf("memo: schema files: %w", err)
	}
	return dir, nil
}

func compileSchema(path string) (*xsdSchema, error) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	errs := newErrs()
	defer C.ph_errs_free(errs)
	ptr := C.ph_compile(cpath, errs)
	if ptr == nil {
		fields := collected(errs, 0)
		if len(fields) > 0 {
			return nil, fmt.Errorf("%s (line %d)", fields[0].Message, fields[0].Line)
		}
		return nil, fmt.Errorf("libxml2 could not compile %s", path)
	}
	return &xsdSchema{ptr: ptr, idle: make(chan *C.ph_ctx, 2*runtime.GOMAXPROCS(0)+MaxStreamingChecks)}, nil
}

func freeSchemas(m map[string]*xsdSchema) {
	for k, s := range m {
		for len(s.idle) > 0 {
			C.ph_ctx_free(<-s.idle)
		}
		if s.ptr != nil {
			C.xmlSchemaFree(s.ptr)
			s.ptr = nil
		}
		delete(m, k)
	}
}

// Results of ph_validate.
const (
	xsdValid         = 0
	xsdNotWellFormed = 1
	xsdInvalid       = 2
)

// validateFile parses the open file f in place (libxml2 reads its
// descriptor; the document never passes through Go memory) and validates
// it. It returns the problems found, or an error for an internal failure.
func (s *xsdSchema) validateFile(f *os.File) ([]hub.FieldError, error) {
	return s.validate(int(f.Fd()), nil, f)
}

// validateBytes parses b from memory and validates it. When valid is not
// nil, it is called as run says.
func (s *xsdSchema) validateBytes(b []byte, valid func(records []byte)) ([]hub.FieldError, error) {
	if len(b) == 0 {
		return []hub.FieldError{{Resource: "memo", Code: CodeNotWellFormed, Message: "the document is empty"}}, nil
	}
	return s.run(nil, -1, b, valid)
}

// xsdFeed is libxml2's view of a spool file that is still being written.
type xsdFeed struct{ ptr *C.ph_feed }

// newXSDFeed feeds f, which holds avail bytes so far, to a validation.
// f must stay open until the validation is done; free the feed after the
// validation and the writer's last call.
func newXSDFeed(f *os.File, avail int64) (*xsdFeed, error) {
	p := C.ph_feed_new(C.int(f.Fd()))
	if p == nil {
		return nil, fmt.Errorf("memo: out of memory")
	}
	C.ph_feed_grow(p, C.longlong(avail))
	return &xsdFeed{ptr: p}, nil
}

// grow announces that the file now holds avail bytes.
func (x *xsdFeed) grow(avail int64) { C.ph_feed_grow(x.ptr, C.longlong(avail)) }

// end tells the reader the file is complete, or, when !complete, that it
// was abandoned: the validation then fails promptly.
func (x *xsdFeed) end(complete bool) {
	state := C.int(-1)
	if complete {
		state = 1
	}
	C.ph_feed_end(x.ptr, state)
}

func (x *xsdFeed) free() { C.ph_feed_free(x.ptr) }

// validateFeed parses the growing file behind x (opened as f) and
// validates it, returning when the file is complete and checked, or as
// soon as a fatal error or the feed's abandonment stops the parser.
func (s *xsdSchema) validateFeed(x *xsdFeed, f *os.File) ([]hub.FieldError, error) {
	fields, err := s.run(x.ptr, -1, nil, nil)
	runtime.KeepAlive(f)
	return fields, err
}

// newErrs returns a problem collector for one C call. It is Go memory
// holding only C pointers (the problems' array and strings ph_collect
// mallocs), which C may write during the call; a calloc per validation
// cost a separate cgo call and about 4% of a small message's accept.
func newErrs() *C.ph_errs { return new(C.ph_errs) }

func (s *xsdSchema) validate(fd int, b []byte, keep *os.File) ([]hub.FieldError, error) {
	fields, err := s.run(nil, fd, b, nil)
	// The descriptor must stay open (f not finalized) until libxml2 is done.
	runtime.KeepAlive(keep)
	return fields, err
}

// outcome turns ph_validate's result into problems or an internal error.
func outcome(rc C.int, errs *C.ph_errs) ([]hub.FieldError, error) {
	switch rc {
	case xsdValid:
		return nil, nil
	case xsdNotWellFormed, xsdInvalid:
		return collected(errs, int(rc)), nil
	default:
		return nil, fmt.Errorf("memo: libxml2 failed to validate (out of memory?)")
	}
}

// collected converts the C collector's records into field errors.
func collected(errs *C.ph_errs, rc int) []hub.FieldError {
	n := int(errs.n)
	out := make([]hub.FieldError, 0, n+1)
	var all []C.ph_err
	if n > 0 {
		all = unsafe.Slice(errs.errs, n)
	}
	for i := 0; i < n; i++ {
		e := &all[i]
		fe := hub.FieldError{
			Resource: "memo",
			Line:     int(e.line),
			Message:  tidyMessage(C.GoString(e.msg)),
		}
		if e.path != nil {
			fe.Field = C.GoString(e.path)
		}
		attr := e.attr != 0
		// For attribute problems libxml2 usually hands over the element
		// node and names the attribute only in the text:
		// "Element 'Message', attribute 'foo': ...".
		if name, ok := attributeInMessage(fe.Message); ok && !attr && e.domain == xmlFromSchemasV {
			attr = true
			if fe.Field != "" {
				fe.Field += "/@" + name
			}
		}
		fe.Code = classify(int(e.domain), int(e.code), attr, fe.Message)
		if fe.Code == CodeSchemaAttrMissing && fe.Field != "" && !strings.Contains(fe.Field, "@") {
			if _, rest, ok := strings.Cut(fe.Message, "The attribute '"); ok {
				if name, _, ok := strings.Cut(rest, "'"); ok {
					fe.Field += "/@" + name
				}
			}
		}
		if rc == xsdNotWellFormed {
			fe.Code = CodeNotWellFormed
		}
		out = append(out, fe)
	}
	if d := int(errs.dropped); d > 0 {
		out = append(out, hub.FieldError{
			Resource: "memo", Code: CodeSchemaInvalid,
			Message: fmt.Sprintf("%d further problems were not reported", d),
		})
	}
	return out
}

// attributeInMessage finds the attribute a libxml2 validity message is
// about, as its local name.
func attributeInMessage(msg string) (string, bool) {
	head, _, ok := strings.Cut(msg, "': ")
	if !ok || !strings.HasPrefix(head, "Element '") {
		return "", false
	}
	_, name, ok := strings.Cut(head, "', attribute '")
	if !ok || name == "" {
		return "", false
	}
	if i := strings.LastIndexByte(name, '}'); i >= 0 {
		name = name[i+1:]
	}
	return name, true
}

// tidyMessage trims libxml2's message and drops the MeMo namespace from
// element names, which it spells "{https://DigitalPost.dk/MeMo-1}label".
func tidyMessage(s string) string {
	s = strings.TrimSpace(s)
	return strings.ReplaceAll(s, "{"+NSMemo+"}", "")
}

// libxml2 error numbers (xmlerror.h) the classification relies on.
const (
	xmlFromParser    = C.XML_FROM_PARSER
	xmlFromNamespace = C.XML_FROM_NAMESPACE
	xmlFromSchemasV  = C.XML_FROM_SCHEMASV

	errCVCElt1         = 1845 // XML_SCHEMAV_CVC_ELT_1: no declaration for the root
	errComplexType321  = 1866 // XML_SCHEMAV_CVC_COMPLEX_TYPE_3_2_1: attribute not allowed
	errComplexType322  = 1867 // XML_SCHEMAV_CVC_COMPLEX_TYPE_3_2_2: attribute not allowed (wildcard)
	errComplexType4    = 1868 // XML_SCHEMAV_CVC_COMPLEX_TYPE_4: required attribute missing
	errElementContent  = 1871 // XML_SCHEMAV_ELEMENT_CONTENT: unexpected or missing child
	errAttributeFirst  = 1861 // XML_SCHEMAV_CVC_ATTRIBUTE_1..4
	errAttributeLast   = 1864
	errValueFirst      = 1822 // XML_SCHEMAV_VALUE .. XML_SCHEMAV_CVC_ENUMERATION_VALID
	errValueLast       = 1843 //  and CVC_COMPLEX_TYPE_2_1..2_3 (content of simple/empty types)
	errFixedValueFirst = 1853 // XML_SCHEMAV_CVC_ELT_5_1_1 .. 5_2_2_2_2: default/fixed values
	errFixedValueLast  = 1858
	errComplexType1    = 1873 // XML_SCHEMAV_CVC_COMPLEX_TYPE_1
)

// classify maps a libxml2 error to a stable code. libxml2 reports both
// "This element is not expected" and "Missing child element(s)" as
// XML_SCHEMAV_ELEMENT_CONTENT; only the message tells them apart.
func classify(domain, code int, attr bool, msg string) string {
	switch domain {
	case xmlFromParser, xmlFromNamespace:
		return CodeNotWellFormed
	case xmlFromSchemasV:
	default:
		return CodeSchemaInvalid
	}
	switch {
	case code == errElementContent:
		switch {
		case strings.Contains(msg, "Missing child element"):
			return CodeSchemaElementMissing
		case strings.Contains(msg, "not expected"):
			return CodeSchemaElementUnexpect
		case strings.Contains(msg, "Character content"):
			return CodeSchemaValueInvalid
		}
		return CodeSchemaElementUnexpect
	case code == errCVCElt1:
		return CodeSchemaElementUnexpect
	case code == errComplexType321 || code == errComplexType322:
		return CodeSchemaAttrUnexpected
	case code == errComplexType4:
		return CodeSchemaAttrMissing
	case code >= errAttributeFirst && code <= errAttributeLast:
		return CodeSchemaAttrInvalid
	case code >= errValueFirst && code <= errValueLast,
		code >= errFixedValueFirst && code <= errFixedValueLast,
		code == errComplexType1:
		if attr {
			return CodeSchemaAttrInvalid
		}
		return CodeSchemaValueInvalid
	}
	return CodeSchemaInvalid
}

// maxRecordURIs is how many namespaces ph_rec records per document.
const maxRecordURIs = C.PH_MAX_URIS

// validatesInStream reports whether b passes ph_validate_stream, the
// one-pass validation without a tree.
func (s *xsdSchema) validatesInStream(b []byte) bool {
	c, err := s.ctx()
	if err != nil || len(b) == 0 {
		return false
	}
	rc := C.ph_validate_stream(c, (*C.char)(unsafe.Pointer(&b[0])), C.int(len(b)))
	s.done(c, rc)
	return rc == xsdValid
}
