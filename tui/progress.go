package tui

// The runbook view's progress bars: one per part of a step that reports
// its progress (each database's dump, each storage's archive), shown
// while it runs and removed when it ends.

import (
	"fmt"
	"strings"
	"time"

	"github.com/ckanops/ckanops/api"
	"github.com/ckanops/ckanops/internal/human"
)

// progressBarWidth is the width of a bar, brackets included.
const progressBarWidth = 22

// onProgressEvent keeps the last report of each running part: an ended
// part goes, and so do a step's parts once it no longer runs, and every
// part once the runbook stops.
func (v *runbookView) onProgressEvent(ev api.RunbookEvent) {
	switch ev.Kind {
	case api.EventProgress:
		if ev.Progress == nil {
			return
		}
		v.progress = api.TrackProgress(v.progress, ev.Step, *ev.Progress)
	case api.EventStep:
		if ev.State != string(api.StepRunning) {
			v.progress = api.ForgetStep(v.progress, ev.Step)
		}
	case api.EventFinished, api.EventAborted, api.EventInterrupted:
		v.progress = nil
	}
}

// progressLines renders one line per running part of step, within w
// columns:
//
//	storage uploads        [███████░░░░░░░░░░░░░]  33% 21.0 MB, 2.1 MB/s, ETA 20s
//	pg_dump ckan_db        [  size unknown      ] 21.0 MB, 2.1 MB/s
func progressLines(parts []api.PartProgress, step string, w int) []string {
	var out []string
	for _, pp := range parts {
		if pp.Step != step {
			continue
		}
		p := pp.Progress
		name := fit(strings.TrimPrefix(p.Part, "archive of "), 22)
		inner := progressBarWidth - 2
		var bar, figs string
		if f := p.Fraction(); f >= 0 {
			n := int(f*float64(inner) + 0.5)
			bar = "[" + strings.Repeat("█", n) + strings.Repeat("░", inner-n) + "]"
			figs = fmt.Sprintf("%3d%% %s", int(f*100), human.Bytes(p.DoneBytes))
		} else {
			bar = "[" + fit("  size unknown", inner) + "]"
			figs = human.Bytes(p.DoneBytes)
		}
		if p.RateBytesPerS > 0 {
			figs += ", " + human.Bytes(int64(p.RateBytesPerS)) + "/s"
		}
		if p.ETAS > 0 {
			figs += ", ETA " + human.Ago(time.Duration(p.ETAS*float64(time.Second)))
		}
		out = append(out, cut("  "+name+" "+bar+" "+figs, w))
	}
	return out
}
