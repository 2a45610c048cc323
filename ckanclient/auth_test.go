package ckanclient_test

import (
	"net/http"
	"testing"

	"github.com/ckanops/ckanops/api"

	"github.com/ckanops/ckanops/ckanclient"
)

func TestTokenStyles(t *testing.T) {
	cases := []struct {
		style      ckanclient.TokenStyle
		token      string
		wantAuth   string
		wantAPIKey string
	}{
		{ckanclient.AuthRaw, testToken, testToken, ""},
		{ckanclient.AuthAPIKey, testToken, "", testToken},
		{ckanclient.AuthBearer, testToken, "Bearer " + testToken, ""},
		{ckanclient.AuthBearer, "", "", ""}, // no token: nothing sent
	}
	for _, tc := range cases {
		t.Run(tc.style.String(), func(t *testing.T) {
			type seen struct{ auth, apiKey, ua, accept, ct, method string }
			got := make(chan seen, 16)
			srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
				got <- seen{r.Header.Get("Authorization"), r.Header.Get("X-CKAN-API-Key"), r.Header.Get("User-Agent"),
					r.Header.Get("Accept"), r.Header.Get("Content-Type"), r.Method}
				if r.URL.Path == api.PathStatus || r.URL.Path == api.PathMode || r.URL.Path == api.PathHealth {
					fixed(200, "application/json", `{"site": "prod"}`)(w, r)
					return
				}
				fixed(200, jsonCT, `{"help": "h", "success": true, "result": {}}`)(w, r)
			})
			c := newClient(t, srv.URL, ckanclient.Options{Token: tc.token, TokenStyle: tc.style, UserAgent: "ckanops-test/1"})
			calls := map[string]func() error{
				"Get":    func() error { return c.Get(ctx(t), "status_show", nil, nil) },
				"Call":   func() error { return c.Call(ctx(t), "package_patch", map[string]string{"id": "x"}, nil) },
				"Status": func() error { _, err := c.Status(ctx(t)); return err },
				"SetMode": func() error {
					_, err := c.SetMode(ctx(t), api.ModeRequest{Mode: api.ModeLive})
					return err
				},
				"Health": func() error { _, err := c.Health(ctx(t)); return err },
			}
			for name, call := range calls {
				if err := call(); err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				s := <-got
				if s.auth != tc.wantAuth || s.apiKey != tc.wantAPIKey {
					t.Errorf("%s: Authorization %q, X-CKAN-API-Key %q; want %q, %q", name, s.auth, s.apiKey, tc.wantAuth, tc.wantAPIKey)
				}
				if s.ua != "ckanops-test/1" || s.accept != "application/json" {
					t.Errorf("%s: User-Agent %q, Accept %q", name, s.ua, s.accept)
				}
				if s.method == http.MethodPost && s.ct != "application/json" {
					t.Errorf("%s: Content-Type %q", name, s.ct)
				}
			}
		})
	}
}

func TestAPIKeyNotSentToAnotherHost(t *testing.T) {
	other := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if k := r.Header.Get("X-CKAN-API-Key"); k != "" {
			t.Errorf("the other host received X-CKAN-API-Key")
		}
		fixed(200, jsonCT, `{"help": "h", "success": true, "result": {}}`)(w, r)
	})
	site := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-CKAN-API-Key") != testToken {
			t.Errorf("the site did not receive X-CKAN-API-Key")
		}
		http.Redirect(w, r, other.URL+r.URL.Path, http.StatusTemporaryRedirect)
	})
	c := newClient(t, site.URL, ckanclient.Options{Token: testToken, TokenStyle: ckanclient.AuthAPIKey})
	if err := c.Get(ctx(t), "status_show", nil, nil); err != nil {
		t.Fatal(err)
	}
	if other.hits.Load() != 1 {
		t.Fatalf("redirect not followed")
	}
}

func TestParseTokenStyle(t *testing.T) {
	for in, want := range map[string]ckanclient.TokenStyle{
		"raw": ckanclient.AuthRaw, "": ckanclient.AuthRaw, "api-key": ckanclient.AuthAPIKey,
		"X-CKAN-API-Key": ckanclient.AuthAPIKey, "Bearer": ckanclient.AuthBearer,
	} {
		got, err := ckanclient.ParseTokenStyle(in)
		if err != nil || got != want {
			t.Errorf("ParseTokenStyle(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	if _, err := ckanclient.ParseTokenStyle("basic"); err == nil {
		t.Error(`ParseTokenStyle("basic") accepted`)
	}
	for _, s := range []ckanclient.TokenStyle{ckanclient.AuthRaw, ckanclient.AuthAPIKey, ckanclient.AuthBearer} {
		if got, err := ckanclient.ParseTokenStyle(s.String()); err != nil || got != s {
			t.Errorf("ParseTokenStyle(%v.String()) = %v, %v", s, got, err)
		}
	}
}
