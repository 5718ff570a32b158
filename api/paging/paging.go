// Package paging is the one shape of every list the API answers: the
// national hub's PagingResult (NgDP's PagingResultUUID, whose content
// here is of any type). A list route answers one page of it, whether the
// list is paged by offset (page, size), by cursor (after, size) or is
// small enough to be read whole and paged in memory; see api/paging.go for
// the query parameters and their bounds. It imports nothing, so every
// client (retrieval/client, the web mailbox, the CLI) decodes the same
// type the API encodes.
//
// The two lists whose shapes NgDP itself defines keep them: GET
// /events/ (EventLogSearchResult) and GET
// /mailboxes/{id}/system-fetches/ (SystemFetchListResult).
package paging

// Result is one page of a list.
type Result[T any] struct {
	// Content is the page's items, never null.
	Content []T `json:"content"`
	// Number is the zero-based page number (0 on a cursor-paged list).
	Number int `json:"number"`
	// Size is the page size asked for (or the default).
	Size int `json:"size"`
	// TotalElements and TotalPages count the whole list; absent on a
	// cursor-paged list, which is not counted (follow NextCursor).
	TotalElements *int64 `json:"totalElements,omitempty"`
	TotalPages    *int   `json:"totalPages,omitempty"`
	// NextCursor is the after= value of the next page of a cursor-paged
	// list, absent on its last page.
	NextCursor string `json:"nextCursor,omitempty"`
}

// Total is TotalElements, 0 when the list was not counted.
func (r Result[T]) Total() int64 {
	if r.TotalElements == nil {
		return 0
	}
	return *r.TotalElements
}

// Offset is page number of a list the service paged, of total items in all.
func Offset[T any](content []T, number, size int, total int64) Result[T] {
	pages := 0
	if size > 0 {
		pages = int((total + int64(size) - 1) / int64(size))
	}
	return Result[T]{Content: nonNil(content), Number: number, Size: size, TotalElements: &total, TotalPages: &pages}
}

// Whole pages a list read whole (an organisation's systems, its contact
// points…) in memory: page number of size items.
func Whole[T any](all []T, number, size int) Result[T] {
	var content []T
	if lo := number * size; lo < len(all) {
		content = all[lo:min(lo+size, len(all))]
	}
	return Offset(content, number, size, int64(len(all)))
}

// Cursor is a page of a cursor-paged list; next is the after= value of
// the next page, "" on the last.
func Cursor[T any](content []T, size int, next string) Result[T] {
	return Result[T]{Content: nonNil(content), Size: size, NextCursor: next}
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
