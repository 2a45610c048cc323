package gate

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/ckanops/ckanops/ckanclient"
)

// health runs the gate's own probes: the gate (mode, phase, in-flight
// writes, store) and the CKAN behind it (status_show). The checks package
// adds the database, Redis, Solr and storage probes.
func (g *Gate) health(ctx context.Context) ckanclient.Report {
	rep := ckanclient.Report{Site: g.opts.Site}
	rep.Checks = append(rep.Checks, g.gateCheck(ctx), g.ckanCheck(ctx))
	return rep
}

func (g *Gate) gateCheck(ctx context.Context) ckanclient.CheckResult {
	t := g.clock()
	st := g.status(ctx, true)
	res := ckanclient.CheckResult{
		Name: "gate", Status: ckanclient.CheckOK, ObservedAt: t,
		Summary: fmt.Sprintf("%s (%s), %d write(s) in flight", st.Mode, st.Phase, len(st.InFlight)),
		Details: map[string]any{"mode": st.Mode, "phase": st.Phase, "version": st.Version, "in_flight": len(st.InFlight), "store": st.Store.Kind, "store_ok": st.Store.OK},
	}
	if !st.Store.OK {
		res.Status = ckanclient.CheckWarn
		res.Summary += "; state store unreachable, enforcing the last known mode"
	}
	return res
}

func (g *Gate) ckanCheck(ctx context.Context) ckanclient.CheckResult {
	start := time.Now()
	res := ckanclient.CheckResult{Name: "ckan", ObservedAt: g.clock()}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	cl, err := ckanclient.New(g.opts.Upstream.String(), ckanclient.Options{Timeout: 5 * time.Second, Retries: -1})
	if err == nil {
		var s *ckanclient.CKANStatus
		s, err = cl.StatusShow(ctx)
		if err == nil {
			res.Status = ckanclient.CheckOK
			res.Summary = fmt.Sprintf("CKAN %s, %d plugins", s.CKANVersion, len(s.Extensions))
			res.Details = map[string]any{"ckan_version": s.CKANVersion, "site_title": s.SiteTitle, "extensions": s.Extensions}
		}
	}
	if err != nil {
		res.Status = ckanclient.CheckFail
		res.Summary = err.Error()
	}
	res.Duration = time.Since(start)
	return res
}

var hostnameOnce = sync.OnceValue(func() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "gate"
	}
	return h
})

func hostname() string { return hostnameOnce() }
