package ckansim

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"mime"
	"net/http"
	"net/url"
	"strings"
)

// This file is ckan/views/api.py's action view: it finds the action, reads
// the request data the way _get_request_data does, runs the action and
// wraps its result or exception in CKAN's envelope.

// actionError is an exception an action raises (NotFound, NotAuthorized,
// ValidationError); the API answers it with CKAN's error envelope.
type actionError struct {
	status int
	body   map[string]any // "__type" and "message", or the field errors
}

func (e *actionError) Error() string { return fmt.Sprintf("%d %v", e.status, e.body) }

// notFound is NotFound: "Not found", with CKAN's ": detail" when given.
func notFound(detail string) error {
	return &actionError{http.StatusNotFound, map[string]any{"__type": "Not Found Error", "message": withDetail("Not found", detail)}}
}

// denied is NotAuthorized: "Access denied", with ": detail" when given.
func denied(detail string) error {
	return &actionError{http.StatusForbidden, map[string]any{"__type": "Authorization Error", "message": withDetail("Access denied", detail)}}
}

// invalid is ValidationError: the field errors sit beside "__type" and
// there is no "message" (CKAN adds one only for a string error).
func invalid(fields map[string]any) error {
	body := map[string]any{"__type": "Validation Error"}
	for k, v := range fields {
		body[k] = v
	}
	return &actionError{http.StatusConflict, body}
}

// missing is the ValidationError of _get_or_bust for absent keys.
func missing(keys ...string) error {
	fields := map[string]any{}
	for _, k := range keys {
		fields[k] = []any{"Missing value"}
	}
	return invalid(fields)
}

func withDetail(msg, detail string) string {
	if detail == "" {
		return msg
	}
	return msg + ": " + detail
}

// dataError is a ValueError of _get_request_data; its text is CKAN's,
// verbatim, and goes into the 400 answer.
type dataError string

func (e dataError) Error() string { return string(e) }

// httpError is a werkzeug HTTPException raised inside a view; the error
// handler answers it with CKAN's HTML error page.
type httpError struct {
	status  int
	message string
}

func (e *httpError) Error() string { return fmt.Sprintf("%d %s", e.status, e.message) }

type okEnvelope struct {
	Help    string `json:"help"`
	Success bool   `json:"success"`
	Result  any    `json:"result"`
}

type errorEnvelope struct {
	Help    string         `json:"help"`
	Error   map[string]any `json:"error"`
	Success bool           `json:"success"`
}

func (x *exchange) serveAction() {
	name := x.vars["logic_function"]
	act, known := x.sim.surface.Actions[name]
	if !known {
		if x.ready() {
			x.apiBadRequest("Action name not known: " + name)
		}
		return
	}
	data, err := x.actionData(act.SideEffectFree)
	if !x.ready() {
		return
	}
	if err != nil {
		var he *httpError
		if errors.As(err, &he) {
			x.errorPage(he.status, he.message)
			return
		}
		x.apiBadRequest("JSON Error: " + err.Error())
		return
	}
	who := x.who
	if _, ok := data["callback"]; ok {
		// CKAN drops the user for JSONP requests.
		delete(data, "callback")
		who = caller{}
	}
	x.entry.Write = !act.SideEffectFree
	call := &actionCall{who: who, name: name, data: data, site: x.siteURL(), siteURL: x.configuredSiteURL()}
	result, err := x.sim.run(call)
	if call.wrote {
		x.entry.Write = true
	}
	help := x.siteURL() + "/api/3/action/help_show?name=" + url.QueryEscape(name)
	if err != nil {
		var ae *actionError
		if !errors.As(err, &ae) {
			x.sim.log.Error("ckansim: action failed", "action", name, "err", err)
			ae = &actionError{http.StatusInternalServerError, map[string]any{"__type": "Internal Server Error", "message": "Internal Server Error"}}
		}
		x.writeAPI(ae.status, errorEnvelope{Help: help, Error: ae.body, Success: false})
		return
	}
	x.writeAPI(http.StatusOK, okEnvelope{Help: help, Success: true, Result: result})
}

// apiBadRequest is _finish_bad_request: status 400 and a bare JSON string.
func (x *exchange) apiBadRequest(detail string) {
	x.writeAPI(http.StatusBadRequest, "Bad request - "+detail)
}

// writeAPI is _finish for JSON, with its JSONP wrapping of successful GETs.
func (x *exchange) writeAPI(status int, v any) {
	body, err := pythonJSON(v)
	if err != nil {
		x.sim.log.Error("ckansim: encode answer", "err", err)
		x.errorPage(http.StatusInternalServerError, "Internal server error")
		return
	}
	ctype := "application/json;charset=utf-8"
	if query := x.r.URL.Query(); status == http.StatusOK && x.r.Method == http.MethodGet && query.Has("callback") {
		body = fmt.Appendf(nil, "%s(%s);", html.EscapeString(query.Get("callback")), body)
		ctype = "application/javascript;charset=utf-8"
	}
	x.w.Header().Set("Content-Type", ctype)
	x.w.WriteHeader(status)
	x.w.Write(body)
}

// actionData reads the request data as _get_request_data does: a GET on an
// action that is not side_effect_free is refused (HEAD is not GET, so it
// passes); POST/PUT form fields come first (a lone field whose value is ""
// or "1" is JSON in its name), then the query string for side_effect_free
// actions, then a JSON body; uploaded files are added under their field
// names.
func (x *exchange) actionData(sideEffectFree bool) (map[string]any, error) {
	r := x.r
	if !sideEffectFree && r.Method == http.MethodGet {
		return nil, dataError("Invalid request. Please use POST method for your request")
	}
	mediaType, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	var (
		form  url.Values
		files map[string]*upload
		body  []byte
		err   error
	)
	switch mediaType {
	case "multipart/form-data":
		form, files, err = readMultipart(r)
		if err != nil {
			return nil, &httpError{http.StatusBadRequest, "The browser (or proxy) sent a request that this server could not understand."}
		}
	case "application/x-www-form-urlencoded":
		body, err = readBody(r)
		if err == nil {
			form, _ = url.ParseQuery(string(body))
			body = nil
		}
	default:
		body, err = readBody(r)
	}
	if err != nil {
		return nil, &httpError{http.StatusBadRequest, "The browser (or proxy) sent a request that this server could not understand."}
	}

	var data map[string]any
	query := r.URL.Query()
	switch {
	case (r.Method == http.MethodPost || r.Method == http.MethodPut) && len(form) > 0:
		data, err = formRequestData(form)
	case len(query) > 0 && sideEffectFree:
		data = mixed(query)
	case len(body) > 0:
		data, err = x.jsonData(body, mediaType)
	default:
		data = map[string]any{}
	}
	if err != nil {
		return nil, err
	}
	if r.Method == http.MethodPut && len(data) == 0 {
		return nil, dataError("Invalid request. Please use the POST method for your request")
	}
	for name, f := range files {
		data[name] = f
	}
	return data, nil
}

// formRequestData turns form fields into request data.
func formRequestData(form url.Values) (map[string]any, error) {
	if len(form) == 1 {
		for key, values := range form {
			if values[0] == "" || values[0] == "1" {
				var v any
				if err := decodeJSON([]byte(key), &v); err != nil {
					return nil, dataError("Error decoding JSON data. Error: JSONDecodeError('Expecting value: line 1 column 1 (char 0)') JSON data extracted from the request: {}")
				}
				return asDict(v)
			}
		}
	}
	return mixed(form), nil
}

// jsonData decodes a JSON body. CKAN 2.11 (Werkzeug 3) refuses a body whose
// Content-Type is not JSON with an HTML 415; CKAN 2.10 (Werkzeug 2.0) reads
// it as None.
func (x *exchange) jsonData(body []byte, mediaType string) (map[string]any, error) {
	isJSON := mediaType == "application/json" || (strings.HasPrefix(mediaType, "application/") && strings.HasSuffix(mediaType, "+json"))
	if !isJSON {
		if x.sim.surface.Version == "2.10" {
			return asDict(nil)
		}
		return nil, &httpError{http.StatusUnsupportedMediaType, "Did not attempt to load JSON data because the request Content-Type was not 'application/json'."}
	}
	var v any
	if err := decodeJSON(body, &v); err != nil {
		return nil, dataError("Error decoding JSON data. Error: <BadRequest '400: Bad Request'> JSON data extracted from the request: {}")
	}
	return asDict(v)
}

func asDict(v any) (map[string]any, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, dataError(fmt.Sprintf("Request data JSON decoded to %s but it needs to be a dictionary.", pyRepr(v)))
	}
	return m, nil
}

// decodeJSON decodes one JSON value, keeping numbers as json.Number.
func decodeJSON(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("extra data")
	}
	return nil
}

// mixed is api.py's mixed(): one value stays a string, several become a
// list.
func mixed(values url.Values) map[string]any {
	out := make(map[string]any, len(values))
	for k, vs := range values {
		if len(vs) == 1 {
			out[k] = vs[0]
			continue
		}
		list := make([]any, len(vs))
		for i, v := range vs {
			list[i] = v
		}
		out[k] = list
	}
	return out
}
