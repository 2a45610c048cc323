package httpjson

import (
	"math"
	"net/http/httptest"
	"testing"
)

func TestWrite(t *testing.T) {
	rec := httptest.NewRecorder()
	Write(rec, 409, map[string]string{"error": "<b>&</b>"})
	if rec.Code != 409 {
		t.Fatalf("status %d", rec.Code)
	}
	for k, want := range map[string]string{
		"Content-Type": "application/json;charset=utf-8", "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
	} {
		if got := rec.Header().Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	if got, want := rec.Body.String(), `{"error":"\u003cb\u003e\u0026\u003c/b\u003e"}`+"\n"; got != want {
		t.Errorf("body %q, want %q", got, want)
	}
}

func TestWriteUnencodable(t *testing.T) {
	rec := httptest.NewRecorder()
	Write(rec, 200, math.Inf(1))
	if rec.Code != 500 || rec.Body.String() != `{"error":"cannot encode the answer"}`+"\n" {
		t.Fatalf("%d %q", rec.Code, rec.Body.String())
	}
}
