package ckanclient_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/ckanops/ckanops/api"

	"github.com/ckanops/ckanops/ckanclient"
)

func ts(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

func tp(s string) *time.Time { t := ts(s); return &t }

func i64(v int64) *int64 { return &v }

// The Go values the wire files in testdata/wire hold.
var (
	statusAnonymous = api.Status{
		Site: "prod", Mode: api.ModeLive, Phase: api.PhaseLive,
		Since: ts("2026-11-29T12:00:00Z"), Version: 7,
	}
	statusFull = api.Status{
		Site: "prod", Mode: api.ModeReadOnly, Phase: api.PhaseDraining,
		Message:    "Upgrading to CKAN 2.11; back by 14:00 UTC",
		Since:      ts("2026-11-29T12:30:00Z"),
		Until:      tp("2026-11-29T14:00:00Z"),
		Version:    8,
		QuiescedAt: tp("2026-11-29T12:30:04.25Z"),
		InFlight:   []api.InFlightWrite{{Method: "POST", Path: "/api/3/action/package_update", AgeMS: 1250, Remote: "10.0.0.7:51234"}},
		Gates: []api.GateInfo{
			{ID: "web1", Version: 8, Phase: api.PhaseDraining, InFlight: 1, Seen: ts("2026-11-29T12:30:02Z")},
			{ID: "web2", Version: 7, Phase: api.PhaseLive, InFlight: 0, Seen: ts("2026-11-29T12:20:00Z"), Gone: true},
		},
		Store:  &api.StoreHealth{Kind: "redis", OK: false, StaleSince: tp("2026-11-29T12:29:00Z")},
		Actor:  "alice",
		Reason: "upgrade to 2.11",
	}
	modeRequest = api.ModeRequest{
		Mode: api.ModeReadOnly, Message: "Upgrading to CKAN 2.11",
		Until: tp("2026-11-29T14:00:00Z"), Reason: "upgrade to 2.11", ExpectVersion: i64(7),
	}
	modeRequestFor = api.ModeRequest{Mode: api.ModeDown, For: "2h30m"}
	report         = api.Report{Site: "prod", Checks: []api.CheckResult{
		{Name: "ckan", Status: api.CheckOK, Summary: "CKAN 2.11.5, 5 plugins",
			CKAN:       &api.CKANDetails{Version: new("2.11.5"), Plugins: []string{"activity", "datastore"}},
			ObservedAt: ts("2026-11-29T12:30:00Z"), Duration: 1500 * time.Millisecond},
		{Name: "solr", Status: api.CheckFail, Summary: "no answer within 2s",
			ObservedAt: ts("2026-11-29T12:30:00Z"), Duration: 2 * time.Second},
	}}
)

// TestWireFormat pins the control API's JSON: each Go value encodes to
// exactly the keys and values of its wire file, and decodes back.
func TestWireFormat(t *testing.T) {
	cases := []struct {
		file  string
		value any
		fresh func() any
	}{
		{"status_anonymous.json", statusAnonymous, func() any { return new(api.Status) }},
		{"status_full.json", statusFull, func() any { return new(api.Status) }},
		{"mode_request.json", modeRequest, func() any { return new(api.ModeRequest) }},
		{"mode_request_for.json", modeRequestFor, func() any { return new(api.ModeRequest) }},
		{"report.json", report, func() any { return new(api.Report) }},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			golden := wire(t, tc.file)
			enc, err := json.Marshal(tc.value)
			if err != nil {
				t.Fatal(err)
			}
			var want, got any
			if err := json.Unmarshal(golden, &want); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(enc, &got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("encoding differs from %s:\ngot  %s\nwant %s", tc.file, enc, golden)
			}
			dec := tc.fresh()
			if err := json.Unmarshal(golden, dec); err != nil {
				t.Fatal(err)
			}
			if v := reflect.ValueOf(dec).Elem().Interface(); !reflect.DeepEqual(v, tc.value) {
				t.Errorf("decoding %s:\ngot  %#v\nwant %#v", tc.file, v, tc.value)
			}
		})
	}
}

func TestCheckResultDurationMS(t *testing.T) {
	b, err := json.Marshal(api.CheckResult{Name: "x", Duration: 1500*time.Millisecond + 900*time.Microsecond})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"duration_ms":1500`) || strings.Contains(string(b), `"Duration"`) || strings.Contains(string(b), `"details"`) {
		t.Errorf("got %s", b)
	}
}

func TestModeRequestValidate(t *testing.T) {
	cases := []struct {
		req  api.ModeRequest
		want string // "" for valid
	}{
		{api.ModeRequest{Mode: api.ModeLive}, ""},
		{modeRequest, ""},
		{modeRequestFor, ""},
		{api.ModeRequest{}, "mode is missing"},
		{api.ModeRequest{Mode: "readonly"}, `mode "readonly" is not one of`},
		{api.ModeRequest{Mode: api.ModeDown, For: "2 hours"}, "not a duration"},
		{api.ModeRequest{Mode: api.ModeDown, For: "-5m"}, "must be positive"},
		{api.ModeRequest{Mode: api.ModeDown, For: "5m", Until: tp("2026-11-29T14:00:00Z")}, "not both"},
	}
	for _, tc := range cases {
		err := tc.req.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%+v: %v", tc.req, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%+v: got %v, want %q", tc.req, err, tc.want)
		}
	}
}

func TestGateStatusAndHealth(t *testing.T) {
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			t.Errorf("%s %s", r.Method, r.URL.Path)
		}
		authed := r.Header.Get("Authorization") == "Bearer "+testToken
		switch {
		case r.URL.Path == api.PathStatus && authed:
			fixed(200, "application/json", string(wire(t, "status_full.json")))(w, r)
		case r.URL.Path == api.PathStatus:
			fixed(200, "application/json", string(wire(t, "status_anonymous.json")))(w, r)
		case r.URL.Path == api.PathHealth && authed:
			fixed(200, "application/json", string(wire(t, "report.json")))(w, r)
		case r.URL.Path == api.PathHealth:
			fixed(401, "application/json", `{"error": "missing or invalid token"}`)(w, r)
		default:
			fixed(404, "text/plain; charset=utf-8", "404 page not found\n")(w, r)
		}
	})

	anon := newClient(t, srv.URL, ckanclient.Options{})
	st, err := anon.Status(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*st, statusAnonymous) {
		t.Errorf("anonymous status: got %+v", st)
	}
	_, err = anon.Health(ctx(t))
	e := as[*ckanclient.APIError](t, err)
	if e.Status != 401 || !ckanclient.IsAuthorization(err) {
		t.Errorf("got %+v", e)
	}
	checkErrText(t, err, "gate health at "+srv.URL+"/-/ckanops/health", "401", "missing or invalid token", "token is missing or wrong")

	op := newClient(t, srv.URL, ckanclient.Options{Token: testToken, TokenStyle: ckanclient.AuthBearer})
	st, err = op.Status(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*st, statusFull) {
		t.Errorf("token status: got %+v", st)
	}
	rep, err := op.Health(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*rep, report) {
		t.Errorf("health: got %+v", rep)
	}
}

func TestSetMode(t *testing.T) {
	var gotBody map[string]any
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != api.PathMode {
			t.Errorf("%s %s", r.Method, r.URL.Path)
		}
		b, _ := io.ReadAll(r.Body)
		gotBody = nil
		if err := json.Unmarshal(b, &gotBody); err != nil {
			t.Errorf("body %q: %v", b, err)
		}
		fixed(200, "application/json", string(wire(t, "status_full.json")))(w, r)
	})
	c := newClient(t, srv.URL, ckanclient.Options{Token: testToken, TokenStyle: ckanclient.AuthBearer})
	st, err := c.SetMode(ctx(t), modeRequest)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*st, statusFull) {
		t.Errorf("got %+v", st)
	}
	var want map[string]any
	_ = json.Unmarshal(wire(t, "mode_request.json"), &want)
	if !reflect.DeepEqual(gotBody, want) {
		t.Errorf("request body %v, want %v", gotBody, want)
	}

	// An invalid request is not sent.
	srv.hits.Store(0)
	_, err = c.SetMode(ctx(t), api.ModeRequest{Mode: "maintenance"})
	checkErrText(t, err, "gate mode at", `mode "maintenance" is not one of`)
	if n := srv.hits.Load(); n != 0 {
		t.Errorf("invalid request sent %d times", n)
	}
}

func TestGateErrors(t *testing.T) {
	current := string(wire(t, "status_full.json"))
	cases := []struct {
		name    string
		handler http.HandlerFunc
		check   func(t *testing.T, err error)
	}{
		{
			name:    "409 with the current record under current",
			handler: fixed(409, "application/json", `{"error": "version conflict: expected 7, current 8", "current": `+current+`}`),
			check: func(t *testing.T, err error) {
				e := as[*ckanclient.ConflictError](t, err)
				if !reflect.DeepEqual(e.Current, statusFull) || e.Expected == nil || *e.Expected != 7 {
					t.Errorf("got %+v", e)
				}
				if !ckanclient.IsConflict(err) || ckanclient.IsAuthorization(err) {
					t.Error("IsConflict false")
				}
				checkErrText(t, err, "changed meanwhile by alice at 2026-11-29T12:30:00Z to read-only", `"upgrade to 2.11"`,
					"now version 8, you expected 7", "re-read the status", "retry")
			},
		},
		{
			name:    "409 with the record at the top level",
			handler: fixed(409, "application/json", current),
			check: func(t *testing.T, err error) {
				e := as[*ckanclient.ConflictError](t, err)
				if e.Current.Version != 8 || e.Current.Actor != "alice" {
					t.Errorf("got %+v", e)
				}
			},
		},
		{
			name:    "401 missing token",
			handler: fixed(401, "application/json", `{"error": "missing or invalid token"}`),
			check: func(t *testing.T, err error) {
				e := as[*ckanclient.APIError](t, err)
				if e.Status != 401 || e.Type != ckanclient.TypeAuthorization || e.Message != "missing or invalid token" {
					t.Errorf("got %+v", e)
				}
				checkErrText(t, err, "token is missing or wrong", "ops token")
			},
		},
		{
			name:    "403 not a sysadmin",
			handler: fixed(403, "application/json", `{"error": "user editor is not a sysadmin"}`),
			check: func(t *testing.T, err error) {
				as[*ckanclient.APIError](t, err)
				if !ckanclient.IsAuthorization(err) {
					t.Error("IsAuthorization false")
				}
				checkErrText(t, err, "not a sysadmin", "sysadmin's API token")
			},
		},
		{
			name:    "403 in CKAN's envelope",
			handler: fixed(403, jsonCT, envAuth),
			check: func(t *testing.T, err error) {
				as[*ckanclient.APIError](t, err)
				checkErrText(t, err, "not a sysadmin")
			},
		},
		{
			name:    "400 bad request",
			handler: fixed(400, "application/json", `{"error": "for: time: invalid duration \"2 hours\""}`),
			check: func(t *testing.T, err error) {
				if !ckanclient.IsValidation(err) {
					t.Errorf("got %v", err)
				}
				checkErrText(t, err, "invalid duration")
			},
		},
		{
			name:    "500 gate error",
			handler: fixed(500, "application/json", `{"error": "state store: write /var/lib/ckanops/prod.state.json: no space left on device"}`),
			check: func(t *testing.T, err error) {
				e := as[*ckanclient.APIError](t, err)
				if e.Type != ckanclient.TypeGate {
					t.Errorf("got %+v", e)
				}
				checkErrText(t, err, "500 Gate Error", "no space left on device")
			},
		},
		{
			name:    "no gate: CKAN's HTML 404",
			handler: fixed(404, "text/html; charset=utf-8", page(t, "ckan_404.html")),
			check: func(t *testing.T, err error) {
				as[*ckanclient.HTTPError](t, err)
				checkErrText(t, err, "no ckanops gate answers at this URL")
			},
		},
		{
			name:    "truncated record",
			handler: fixed(200, "application/json", current[:40]),
			check: func(t *testing.T, err error) {
				as[*ckanclient.DecodeError](t, err)
				checkErrText(t, err, "gate mode at", "/-/ckanops/mode", "unexpected end of JSON input")
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t, tc.handler)
			c := newClient(t, srv.URL, ckanclient.Options{Token: testToken, TokenStyle: ckanclient.AuthBearer})
			_, err := c.SetMode(ctx(t), api.ModeRequest{Mode: api.ModeReadOnly, ExpectVersion: i64(7)})
			tc.check(t, err)
			t.Log(err)
			if n := srv.hits.Load(); n != 1 {
				t.Errorf("server hit %d times, want 1", n)
			}
		})
	}
}

// A stream that goes silent (a half-open connection: not even the
// gate's keep-alive comes) is dropped, saying so, instead of blocking.
func TestRunbookEventsNoticeAHalfOpenStream(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "id: 1\ndata: {\"seq\":1,\"runbook\":\"r\",\"kind\":\"started\"}\n\n")
		w.(http.Flusher).Flush()
		select { // then nothing, as from a host that vanished
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	c, err := ckanclient.New(srv.URL, ckanclient.Options{StreamIdle: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var got []int64
	err = c.RunbookEvents(context.Background(), 0, func(ev api.RunbookEvent) error {
		got = append(got, ev.Seq)
		time.Sleep(300 * time.Millisecond) // the caller's own time does not count
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "nothing from the gate for 200ms") {
		t.Fatalf("err %v", err)
	}
	if len(got) != 1 {
		t.Fatalf("events %v", got)
	}
}
