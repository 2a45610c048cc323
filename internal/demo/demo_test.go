package demo

import (
	"context"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/ckanops/ckanops/ckanclient"
	"github.com/ckanops/ckanops/config"
	"github.com/ckanops/ckanops/internal/ckansim"
)

func TestDemoSitesAreRealGates(t *testing.T) {
	d, err := Start(context.Background(), Options{Sites: 3, Traffic: true})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		d.Close()
		if _, err := os.Stat(d.Dir); !os.IsNotExist(err) {
			t.Errorf("Close left %s behind", d.Dir)
		}
	}()
	sites, _, err := config.LoadSites(d.SitesFile)
	if err != nil {
		t.Fatalf("the demo's sites.toml does not load: %v", err)
	}
	if len(sites.Sites) != 3 {
		t.Fatalf("%d sites", len(sites.Sites))
	}
	s0, err := sites.Find(d.Sites[0].Name)
	if err != nil {
		t.Fatal(err)
	}
	tok, warns, err := s0.Token()
	if err != nil || len(warns) != 0 {
		t.Fatalf("token: %v %v", err, warns)
	}
	c, err := ckanclient.New(s0.URL, ckanclient.Options{Token: tok, TokenStyle: ckanclient.AuthBearer})
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.SetMode(context.Background(), ckanclient.ModeRequest{Mode: ckanclient.ModeReadOnly, Message: "demo"})
	if err != nil || st.Mode != ckanclient.ModeReadOnly {
		t.Fatalf("enable through the demo's config: %+v %v", st, err)
	}
	for i, s := range d.Sites[:2] {
		req, _ := http.NewRequest("POST", s.GateURL+"/api/3/action/package_patch", strings.NewReader(`{"id": "bus-stops", "notes": "x"}`))
		req.Header.Set("Authorization", ckansim.SysadminToken)
		req.Header.Set("Content-Type", "application/json")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		want := []int{503, 200}[i]
		if res.StatusCode != want {
			t.Errorf("%s: write got %d, want %d", s.Name, res.StatusCode, want)
		}
	}
}
