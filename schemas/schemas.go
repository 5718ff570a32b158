// Package schemas embeds the XML Schemas the hub validates against: MeMo's,
// and the OIO fjernprint schema of the print part an SF1601 kombi_request
// may carry.
//
// MeMo 1.1 is MeMo_core.xsd with its eight companion schemas in this folder;
// MeMo 1.2 is Version1.2/MeMo_core.xsd, which imports the same companions
// through "../". The files are the Agency for Digital Government's schemas as
// bundled by public repositories (see ../shared/memo/SOURCES.md at the time
// they were copied); they are embedded so the binary never reads them from
// disk or the network at run time.
//
// fjernprint/ holds the OIO fjernprint schemas (urn:oio:fjernprint:1.0.0)
// that ForsendelseI needs, copied unchanged from KOMBIT's SF1600 package as
// bundled by itk-dev/serviceplatformen @ 9afa6353 (MIT), and posthub's entry
// schema fjernprint/ForsendelseISamling.xsd, whose comment says why it
// exists.
package schemas

import "embed"

// FS holds every schema file, with the relative layout their imports expect.
//
//go:embed *.xsd Version1.2/*.xsd fjernprint/*.xsd
var FS embed.FS

// Fjernprint is the entry schema of SF1601's fjernprint part inside FS.
const Fjernprint = "fjernprint/ForsendelseISamling.xsd"

// Core names the entry schema of each supported memoVersion inside FS.
var Core = map[string]string{
	"1.1": "MeMo_core.xsd",
	"1.2": "Version1.2/MeMo_core.xsd",
}
