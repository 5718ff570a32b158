package paging

import (
	"encoding/json"
	"testing"
)

func TestWholePagesInMemory(t *testing.T) {
	all := []int{1, 2, 3, 4, 5}
	for _, tc := range []struct {
		name         string
		number, size int
		want         []int
		pages        int
	}{
		{"first page", 0, 2, []int{1, 2}, 3},
		{"last page is short", 2, 2, []int{5}, 3},
		{"past the end is empty, not null", 3, 2, []int{}, 3},
		{"one page holds all", 0, 1000, all, 1},
	} {
		r := Whole(all, tc.number, tc.size)
		if len(r.Content) != len(tc.want) || r.Content == nil || r.Total() != 5 || *r.TotalPages != tc.pages || r.Number != tc.number || r.Size != tc.size {
			t.Errorf("%s: %+v", tc.name, r)
		}
		for i := range tc.want {
			if r.Content[i] != tc.want[i] {
				t.Errorf("%s: %v, want %v", tc.name, r.Content, tc.want)
			}
		}
	}
	if r := Whole[int](nil, 0, 10); r.Content == nil || r.Total() != 0 || *r.TotalPages != 0 {
		t.Errorf("an empty list: %+v", r)
	}
}

// A cursor page carries no totals (it was not counted) and a counted page
// always carries them, zero included: the JSON says which is which.
func TestTotalsOnlyWhereCounted(t *testing.T) {
	b, _ := json.Marshal(Cursor([]string(nil), 50, ""))
	if string(b) != `{"content":[],"number":0,"size":50}` {
		t.Errorf("cursor page: %s", b)
	}
	b, _ = json.Marshal(Cursor([]string{"a"}, 1, "a"))
	if string(b) != `{"content":["a"],"number":0,"size":1,"nextCursor":"a"}` {
		t.Errorf("cursor page with a next one: %s", b)
	}
	b, _ = json.Marshal(Offset([]string(nil), 0, 100, 0))
	if string(b) != `{"content":[],"number":0,"size":100,"totalElements":0,"totalPages":0}` {
		t.Errorf("empty offset page: %s", b)
	}
}
