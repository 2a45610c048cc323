package main

import (
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// The gate's own listener answers the metrics to a token only; a scraper
// reads them without one on [gate] metrics_listen. A metrics_listen the
// gate cannot open stops it before it serves anything.
func TestGateMetricsListen(t *testing.T) {
	s := newSite(t)
	metrics := freePort(t)
	f, err := os.OpenFile(s.gateConf, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(f, "metrics_listen = \""+metrics+"\"\n") // [gate] is the file's last table
	f.Close()
	s.startGate()

	get := func(u string) (int, string) {
		t.Helper()
		res, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if code, body := get(s.gateURL + "/-/ckanops/metrics"); code != 401 || strings.Contains(body, "ckanops_") {
		t.Errorf("the gate's metrics without a token: %d %s", code, body)
	}
	if code, body := s.gateCall("GET", "/-/ckanops/metrics", ""); code != 200 || !strings.Contains(body, "\nckanops_mode{mode=\"live\"} 1\n") {
		t.Errorf("the gate's metrics with the token: %d %s", code, body)
	}
	if code, body := get("http://" + metrics + "/metrics"); code != 200 || !strings.Contains(body, "\nckanops_mode{mode=\"live\"} 1\n") {
		t.Errorf("metrics_listen: %d %s", code, body)
	}
	if code, _ := get("http://" + metrics + "/-/ckanops/status"); code != 404 {
		t.Errorf("metrics_listen serves more than /metrics: %d", code)
	}
	if !strings.Contains(s.logs.String(), `msg="metrics listening" listen=`+metrics) {
		t.Errorf("the log does not say where the metrics are:\n%s", s.logs)
	}

	// Taken: the gate does not start.
	s.cmd.Process.Signal(os.Interrupt)
	s.cmd.Wait()
	taken, err := net.Listen("tcp", metrics)
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	cmd := exec.Command(binPath, "gate", "--config", s.gateConf)
	done := make(chan struct{})
	var out []byte
	go func() { out, _ = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatal("the gate kept running with its metrics_listen taken")
	}
	if cmd.ProcessState.ExitCode() == 0 || !strings.Contains(string(out), "metrics_listen: listen on "+metrics) {
		t.Errorf("exit %d:\n%s", cmd.ProcessState.ExitCode(), out)
	}
	if _, err := http.Get(s.gateURL + "/-/ckanops/status"); err == nil {
		t.Error("the gate serves without its metrics listener")
	}
}
