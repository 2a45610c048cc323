package ckanclient_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/ckanops/ckanops/api"

	"github.com/ckanops/ckanops/ckanclient"
)

func TestSuspendAndResumeJobs(t *testing.T) {
	var paths []string
	srv := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		var req api.JobsRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || r.Method != "POST" || r.Header.Get("Authorization") != "Bearer "+testToken {
			http.Error(w, `{"error": "bad request"}`, 400)
			return
		}
		paths = append(paths, r.URL.Path+" "+req.For+" "+req.Reason)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(api.JobsState{Suspended: r.URL.Path == api.PathJobsSuspend, Changed: true})
	})
	c, err := ckanclient.New(srv.URL, ckanclient.Options{Token: testToken, TokenStyle: ckanclient.AuthBearer})
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.SuspendJobs(context.Background(), api.JobsRequest{For: "2h", Reason: "snapshot"})
	if err != nil || !st.Suspended || !st.Changed {
		t.Fatalf("suspend: %+v %v", st, err)
	}
	st, err = c.ResumeJobs(context.Background(), api.JobsRequest{Reason: "done"})
	if err != nil || st.Suspended {
		t.Fatalf("resume: %+v %v", st, err)
	}
	want := []string{"/-/ckanops/jobs/suspend 2h snapshot", "/-/ckanops/jobs/resume  done"}
	if len(paths) != 2 || paths[0] != want[0] || paths[1] != want[1] {
		t.Fatalf("requests: %q", paths)
	}
	// Writes are never retried.
	fail := newServer(t, fixed(503, "application/json", `{"error": "redis down"}`))
	c2, _ := ckanclient.New(fail.URL, ckanclient.Options{Token: testToken, TokenStyle: ckanclient.AuthBearer, Retries: 3})
	if _, err := c2.SuspendJobs(context.Background(), api.JobsRequest{}); err == nil || fail.hits.Load() != 1 {
		t.Fatalf("suspend against a 503: err %v after %d hits (want 1)", err, fail.hits.Load())
	}
}
