package ckansim

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// An extension's actions answer as CKAN's action view answers: a GET on
// one that is not side_effect_free is refused before it runs; a
// side_effect_free one runs on GET.
func TestExtensionActions(t *testing.T) {
	sim, err := New(Options{Extensions: []string{"harvest"}})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sim)
	defer srv.Close()
	get := func(path string) (int, string) {
		res, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b := new(strings.Builder)
		_, _ = io.Copy(b, res.Body)
		return res.StatusCode, b.String()
	}
	if code, body := get("/api/3/action/harvest_job_create"); code != 400 || !strings.Contains(body, "Please use POST method") {
		t.Fatalf("GET of a write: %d %s", code, body)
	}
	if w := sim.Writes(); len(w) != 0 {
		t.Fatalf("the refused GET ran: %+v", w)
	}
	if code, body := get("/api/3/action/harvest_source_list"); code != 200 || !strings.Contains(body, `"success": true`) {
		t.Fatalf("GET of a read: %d %s", code, body)
	}
	if _, err := New(Options{Extensions: []string{"spatial"}}); err == nil {
		t.Fatal("an unknown extension was taken")
	}
}
