// Package httpjson writes the JSON answers of every HTTP endpoint ckanops
// serves (the gate's control API, the runbook API, CKAN-shaped refusals),
// so that each carries the same headers.
package httpjson

import (
	"encoding/json"
	"net/http"
)

// Write answers status with v as JSON. v is encoded before anything is
// sent, so an encoding failure is a clean 500, never half a body.
// encoding/json escapes <, > and & so that text from an operator or a
// client can never become markup in a browser, and nosniff keeps a
// browser from guessing otherwise; no-store keeps the answer out of
// caches (a mode or a refusal must not outlive its moment).
func Write(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":"cannot encode the answer"}`)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json;charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}
