// Package schemas embeds the MeMo XML Schemas the hub validates against.
//
// MeMo 1.1 is MeMo_core.xsd with its eight companion schemas in this folder;
// MeMo 1.2 is Version1.2/MeMo_core.xsd, which imports the same companions
// through "../". The files are the Agency for Digital Government's schemas as
// bundled by public repositories (see ../shared/memo/SOURCES.md at the time
// they were copied); they are embedded so the binary never reads them from
// disk or the network at run time.
package schemas

import "embed"

// FS holds every schema file, with the relative layout their imports expect.
//
//go:embed *.xsd Version1.2/*.xsd
var FS embed.FS

// Core names the entry schema of each supported memoVersion inside FS.
var Core = map[string]string{
	"1.1": "MeMo_core.xsd",
	"1.2": "Version1.2/MeMo_core.xsd",
}
