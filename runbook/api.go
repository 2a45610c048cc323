package runbook

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/ckanops/ckanops/api"
	"github.com/ckanops/ckanops/internal/httpjson"
)

// maxActionBody bounds the body of a runbook call.
const maxActionBody = 64 << 10

// keepAlive is how often an idle event stream gets a comment, so proxies
// and the console see the connection is alive.
var keepAlive = 15 * time.Second

// ServeRunbook answers the runbook API for an authenticated actor (the
// gate authenticates; see ckanclient's Path* constants):
//
//	GET  /-/ckanops/runbook           the current or last runbook (404 if none ever)
//	POST /-/ckanops/runbook           start one (RunbookOptions); 201
//	POST /-/ckanops/runbook/confirm   confirm the waiting step (RunbookAction)
//	POST /-/ckanops/runbook/retry     run the failed or interrupted step again
//	POST /-/ckanops/runbook/resume    continue an interrupted runbook
//	POST /-/ckanops/runbook/skip      skip the step (preflight, migrate, verify, disable; A/B: restore_b, prepare_b too)
//	POST /-/ckanops/runbook/abort     stop; {"disable": true} also reopens writes
//	GET  /-/ckanops/runbook/events    Server-Sent Events (?since=SEQ or Last-Event-ID)
//
// Errors are {"error": "..."}; a 409 adds "runbook": the current record.
func (e *Engine) ServeRunbook(w http.ResponseWriter, r *http.Request, actor string) {
	path := strings.TrimSuffix(r.URL.Path, "/")
	switch {
	case path == api.PathRunbook && r.Method == http.MethodGet:
		rb, err := e.Current()
		e.answer(w, rb, err, http.StatusOK)
	case path == api.PathRunbook && r.Method == http.MethodPost:
		var o api.RunbookOptions
		if err := decodeBody(r.Body, &o); err != nil {
			e.answer(w, nil, &badRequest{"bad runbook options (want JSON {\"mode\", \"message\", \"until\" or \"for\", \"reason\", \"skip_migrate\", \"auto_confirm\", \"stop_before\", \"ab\"}): " + err.Error()}, 0)
			return
		}
		rb, err := e.Start(r.Context(), o, actor)
		e.answer(w, rb, err, http.StatusCreated)
	case path == api.PathRunbookEvents && r.Method == http.MethodGet:
		e.serveEvents(w, r)
	case r.Method == http.MethodPost && strings.HasPrefix(path, api.PathRunbook+"/"):
		var a api.RunbookAction
		if err := decodeBody(r.Body, &a); err != nil {
			e.answer(w, nil, &badRequest{"bad runbook action (want JSON {\"id\", \"step\", \"site_name\", \"reason\", \"disable\", \"gate\", \"stop_before\"}): " + err.Error()}, 0)
			return
		}
		op := strings.TrimPrefix(path, api.PathRunbook+"/")
		switch op {
		case opConfirm, opRetry, opResume, opSkip, opAbort, opGateStopped:
		default:
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such runbook call: see POST " + api.PathRunbook + "/{confirm,retry,resume,skip,abort,gate-stopped}"})
			return
		}
		rb, err := e.Act(r.Context(), op, a, actor)
		e.answer(w, rb, err, http.StatusOK)
	default:
		w.Header().Set("Allow", "GET, POST")
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "the runbook API takes GET " + api.PathRunbook + ", GET " + api.PathRunbookEvents + ", and POST to start and act"})
	}
}

func decodeBody(body io.Reader, v any) error {
	dec := json.NewDecoder(io.LimitReader(body, maxActionBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

func (e *Engine) answer(w http.ResponseWriter, rb *api.Runbook, err error, okStatus int) {
	var br *badRequest
	switch {
	case err == nil:
		writeJSON(w, okStatus, rb)
	case errors.Is(err, ErrNoRunbook):
		writeJSON(w, http.StatusNotFound, map[string]string{"error": err.Error()})
	case errors.As(err, &br):
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": br.msg})
	case errors.Is(err, ErrConflict):
		body := map[string]any{"error": strings.TrimPrefix(err.Error(), ErrConflict.Error()+": ")}
		if cur, cerr := e.Current(); cerr == nil {
			body["runbook"] = cur
		}
		writeJSON(w, http.StatusConflict, body)
	default:
		body := map[string]any{"error": err.Error()}
		if rb != nil {
			body["runbook"] = rb
		}
		writeJSON(w, http.StatusInternalServerError, body)
	}
}

// writeJSON is the one JSON writer of every endpoint (httpjson.Write).
var writeJSON = httpjson.Write

// serveEvents streams the journal as Server-Sent Events until the runbook
// ends (every event sent), the client leaves, or the gate stops.
func (e *Engine) serveEvents(w http.ResponseWriter, r *http.Request) {
	var since int64
	if s := r.URL.Query().Get("since"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "since must be a sequence number (0 for every event)"})
			return
		}
		since = n
	} else if s := r.Header.Get("Last-Event-ID"); s != "" {
		since, _ = strconv.ParseInt(s, 10, 64)
	}
	if _, err := e.Current(); err != nil {
		e.answer(w, nil, err, 0)
		return
	}
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	_ = rc.Flush()
	tick := time.NewTicker(keepAlive)
	defer tick.Stop()
	for {
		evs, more, done := e.Events(since)
		for _, ev := range evs {
			b, err := json.Marshal(ev)
			if err != nil {
				continue
			}
			if _, err := fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", ev.Seq, ev.Kind, b); err != nil {
				return
			}
			since = ev.Seq
		}
		if len(evs) > 0 {
			if rc.Flush() != nil {
				return
			}
		}
		if done {
			return
		}
		select {
		case <-more:
		case <-r.Context().Done():
			return
		case <-e.base.Done():
			return
		case <-tick.C:
			if _, err := io.WriteString(w, ": keep-alive\n\n"); err != nil || rc.Flush() != nil {
				return
			}
		}
	}
}
