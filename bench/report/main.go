// Command report turns the work directory of bench/run.sh (raw wrk output,
// CPU and memory samples, machine facts, commands, profiles) into
// bench/RESULTS.md, and prints the summary and the targets to stdout.
//
//	report -dir /tmp/ckanops-bench.XXXXXX -out bench/RESULTS.md
//
// Speed is judged only as ratios between contenders of the same run.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

var (
	contenders = []string{"upstream-direct", "nginx-proxy", "naive-httputil", "gate-live", "gate-readonly"}
	targets    = []string{"page", "json"}
)

func main() {
	dir := flag.String("dir", "", "bench/run.sh's work directory (required)")
	out := flag.String("out", "", "write the Markdown report here (required)")
	flag.Parse()
	if *dir == "" || *out == "" {
		fmt.Fprintln(os.Stderr, "report: -dir and -out are required")
		os.Exit(2)
	}
	if err := run(*dir, *out); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
}

// wrkRun is one wrk run, parsed.
type wrkRun struct {
	target, contender, label string
	rps, p50, p99            float64 // req/s, ms, ms
	requests                 int64
	non2xx                   int64
	sockErrors               string // "" when none
	cpuProxy, cpuUp, cpuWrk  int64  // clock ticks during the run
	busy, total, clk         int64  // the machine's busy and total ticks (all CPUs), ticks per second
	load                     string
}

// others is the share (percent) of the machine's CPU time used during the
// run by everything that is not the benchmark (other agents, the kernel's
// threads, steal).
func (r wrkRun) others() float64 {
	if r.total == 0 {
		return 0
	}
	return max(0, float64(r.busy-r.cpuProxy-r.cpuUp-r.cpuWrk)) * 100 / float64(r.total)
}

func (r wrkRun) cpuPerReq(ticks int64) float64 { // µs of CPU per request
	if r.requests == 0 || r.clk == 0 {
		return 0
	}
	return float64(ticks) * 1e6 / float64(r.clk) / float64(r.requests)
}

var (
	reRPS     = regexp.MustCompile(`(?m)^Requests/sec:\s+([0-9.]+)`)
	reLat     = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([0-9.]+)(us|ms|s|m)\s*$`)
	reReqs    = regexp.MustCompile(`(?m)^\s+(\d+) requests in`)
	reNon2xx  = regexp.MustCompile(`(?m)Non-2xx or 3xx responses: (\d+)`)
	reSockErr = regexp.MustCompile(`(?m)Socket errors: (.*)$`)
	reRound   = regexp.MustCompile(`^r\d+$`)
)

func parseWrk(path string) (wrkRun, error) {
	var r wrkRun
	b, err := os.ReadFile(path)
	if err != nil {
		return r, err
	}
	s := string(b)
	m := reRPS.FindStringSubmatch(s)
	if m == nil {
		return r, fmt.Errorf("%s: no Requests/sec line (wrk failed?):\n%s", path, s)
	}
	r.rps, _ = strconv.ParseFloat(m[1], 64)
	for _, m := range reLat.FindAllStringSubmatch(s, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		v *= map[string]float64{"us": 1e-3, "ms": 1, "s": 1e3, "m": 60e3}[m[3]]
		if m[1] == "50" {
			r.p50 = v
		} else {
			r.p99 = v
		}
	}
	if m := reReqs.FindStringSubmatch(s); m != nil {
		r.requests, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := reNon2xx.FindStringSubmatch(s); m != nil {
		r.non2xx, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := reSockErr.FindStringSubmatch(s); m != nil {
		r.sockErrors = strings.TrimSpace(m[1])
	}
	kv, _ := readTSV(path + ".meta")
	r.cpuProxy, _ = strconv.ParseInt(kv["cpu_ticks_proxy"], 10, 64)
	r.cpuUp, _ = strconv.ParseInt(kv["cpu_ticks_upstream"], 10, 64)
	r.clk, _ = strconv.ParseInt(kv["clk_tck"], 10, 64)
	r.cpuWrk, _ = strconv.ParseInt(kv["cpu_ticks_wrk"], 10, 64)
	r.busy, _ = strconv.ParseInt(kv["cpu_ticks_machine_busy"], 10, 64)
	r.total, _ = strconv.ParseInt(kv["cpu_ticks_machine_total"], 10, 64)
	r.load = kv["loadavg"]
	return r, nil
}

// readTSV reads "key<TAB>value" lines; later keys win.
func readTSV(path string) (map[string]string, error) {
	kv := map[string]string{}
	f, err := os.Open(path)
	if err != nil {
		return kv, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "\t")
		if ok {
			kv[k] = v
		}
	}
	return kv, sc.Err()
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if n := len(s); n%2 == 1 {
		return s[n/2]
	} else {
		return (s[n/2-1] + s[n/2]) / 2
	}
}

// summary is a contender's medians over the rounds for one target.
type summary struct {
	rps, p50, p99, cpuProxy, cpuUp, others float64
	rounds                                 []wrkRun
}

func run(dir, out string) error {
	meta, err := readTSV(filepath.Join(dir, "meta.tsv"))
	if err != nil {
		return err
	}
	mem, _ := readTSV(filepath.Join(dir, "mem.tsv"))

	files, _ := filepath.Glob(filepath.Join(dir, "raw", "wrk-*-r*.txt"))
	sums := map[string]map[string]*summary{} // target -> contender
	for _, t := range targets {
		sums[t] = map[string]*summary{}
		for _, c := range contenders {
			sums[t][c] = &summary{}
		}
	}
	var all []wrkRun
	for _, f := range files {
		base := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(f), "wrk-"), ".txt")
		t, rest, _ := strings.Cut(base, "-")
		i := strings.LastIndex(rest, "-")
		if i < 0 || sums[t] == nil || sums[t][rest[:i]] == nil || !reRound.MatchString(rest[i+1:]) {
			continue // warm-up, memory and profiling runs
		}
		r, err := parseWrk(f)
		if err != nil {
			return err
		}
		r.target, r.contender, r.label = t, rest[:i], rest[i+1:]
		all = append(all, r)
		s := sums[t][r.contender]
		s.rounds = append(s.rounds, r)
	}
	if len(all) == 0 {
		return fmt.Errorf("no wrk results in %s/raw", dir)
	}
	slices.SortFunc(all, func(a, b wrkRun) int {
		return cmpAll(slices.Index(targets, a.target)-slices.Index(targets, b.target),
			strings.Compare(a.label, b.label),
			slices.Index(contenders, a.contender)-slices.Index(contenders, b.contender))
	})
	for _, t := range targets {
		for _, c := range contenders {
			s := sums[t][c]
			slices.SortFunc(s.rounds, func(a, b wrkRun) int { return strings.Compare(a.label, b.label) })
			var rps, p50, p99, cp, cu, ot []float64
			for _, r := range s.rounds {
				rps, p50, p99 = append(rps, r.rps), append(p50, r.p50), append(p99, r.p99)
				cp, cu = append(cp, r.cpuPerReq(r.cpuProxy)), append(cu, r.cpuPerReq(r.cpuUp))
				ot = append(ot, r.others())
			}
			s.rps, s.p50, s.p99, s.cpuProxy, s.cpuUp, s.others = median(rps), median(p50), median(p99), median(cp), median(cu), median(ot)
		}
	}

	var md strings.Builder
	w := &md
	fmt.Fprintf(w, "# ckanops gate: benchmark results\n\n")
	fmt.Fprintf(w, "Written by `bench/run.sh` (see `bench/README.md`). Speed is judged only as ratios between contenders of this run.\n\n")
	fmt.Fprintf(w, "| | |\n| --- | --- |\n")
	for _, k := range []struct{ key, label string }{
		{"date", "date (UTC)"}, {"nproc", "nproc"}, {"cpu", "CPU"}, {"mem_total", "memory"}, {"kernel", "kernel"},
		{"go", "Go"}, {"nginx", "nginx"}, {"wrk", "wrk"}, {"git", "commit"}, {"dirty", "uncommitted non-test Go files built in"}, {"settings", "settings"},
		{"page_bytes", "page bytes (upstream)"}, {"readonly_page_bytes", "page bytes (annotated)"}, {"readonly_forms_replaced", "forms replaced on the annotated page"}, {"json_bytes", "JSON bytes"},
		{"load_start", "load average at start (1, 5, 15 min)"}, {"load_end", "load average at end"},
		{"busy_start", "CPU busy before the start, % (other work)"}, {"load_wait_s", "waited for a quieter machine (s)"},
	} {
		fmt.Fprintf(w, "| %s | %s |\n", k.label, mdCell(meta[k.key]))
	}
	if rounds, err := readTSV(filepath.Join(dir, "load-rounds.tsv")); err == nil {
		keys := sortedKeys(rounds)
		var parts []string
		for _, k := range keys {
			parts = append(parts, "round "+k+": "+rounds[k])
		}
		fmt.Fprintf(w, "| load average before each round | %s |\n", strings.Join(parts, "; "))
	}
	fmt.Fprintf(w, "\nThis machine is shared with other agents running builds and tests. The load averages include the benchmark itself (wrk, the upstream and the contender keep about 3 to 4 threads runnable); the \"others' CPU\" column below is the better gauge: the share of the machine's CPU time that processes outside the benchmark (and steal) took during each run (kernel work charged to no process, part of the loopback networking among it, counts there too: a quiet machine reads 0 to 2%%). Nothing is pinned to a CPU: wrk, the upstream nginx and the contender share the %s cores.\n\n", meta["nproc"])

	var summaryMD strings.Builder
	for _, t := range targets {
		fmt.Fprintf(&summaryMD, "### %s (%s), median of %d rounds\n\n", t, map[string]string{"page": "GET /dataset/, text/html", "json": "GET package_show, application/json"}[t], len(sums[t]["gate-live"].rounds))
		fmt.Fprintf(&summaryMD, "| contender | req/s | vs naive | vs nginx-proxy | p50 ms | p99 ms | proxy CPU µs/req | upstream CPU µs/req | others' CPU | req/s by round |\n")
		fmt.Fprintf(&summaryMD, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n")
		naive, ngx := sums[t]["naive-httputil"].rps, sums[t]["nginx-proxy"].rps
		for _, c := range contenders {
			s := sums[t][c]
			var byRound []string
			for _, r := range s.rounds {
				byRound = append(byRound, fmt.Sprintf("%.0f", r.rps))
			}
			proxyCPU := fmt.Sprintf("%.0f", s.cpuProxy)
			if c == "upstream-direct" {
				proxyCPU = "-"
			}
			fmt.Fprintf(&summaryMD, "| %s | %.0f | %s | %s | %.2f | %.2f | %s | %.0f | %.0f%% | %s |\n",
				c, s.rps, ratio(s.rps, naive), ratio(s.rps, ngx), s.p50, s.p99, proxyCPU, s.cpuUp, s.others, strings.Join(byRound, ", "))
		}
		fmt.Fprintln(&summaryMD)
	}
	fmt.Fprintf(w, "## Throughput and latency\n\n")
	fmt.Fprintf(w, "wrk, %s. \"proxy CPU\" is the user+system CPU time the contender's processes (the gate, the naive proxy, nginx-proxy's workers) used during the run, per request; \"upstream CPU\" the same for the upstream nginx's workers. On a shared 2-core machine req/s is bounded by the CPU that wrk, the upstream and the contender share; CPU per request is the contender's own cost.\n\n", meta["settings"])
	md.WriteString(summaryMD.String())

	// Targets.
	var tg strings.Builder
	fmt.Fprintf(&tg, "| check | measured | target | verdict |\n| --- | ---: | ---: | --- |\n")
	// perRound lists a/b for each round (the runs of one round are back to back).
	perRound := func(a, b *summary) string {
		var parts []string
		for i := range min(len(a.rounds), len(b.rounds)) {
			if b.rounds[i].rps > 0 {
				parts = append(parts, fmt.Sprintf("%.2f", a.rounds[i].rps/b.rounds[i].rps))
			}
		}
		return "by round: " + strings.Join(parts, ", ")
	}
	cpuRatio := func(a, b *summary) string { // b's CPU per request over a's: efficiency, independent of scheduling
		if a.cpuProxy == 0 {
			return ""
		}
		return fmt.Sprintf("; by CPU per request: %.2fx", b.cpuProxy/a.cpuProxy)
	}
	check := func(name string, v, goal float64, unit string, atLeast bool, valid bool, note string) {
		verdict := "missed"
		if atLeast && v >= goal || !atLeast && v <= goal {
			verdict = "met"
		}
		if !valid {
			verdict = "not measured"
		}
		if note != "" {
			verdict += " (" + note + ")"
		}
		op := "≤"
		if atLeast {
			op = "≥"
		}
		fmt.Fprintf(&tg, "| %s | %s | %s %s | **%s** |\n", name, fmtUnit(v, unit), op, fmtUnit(goal, unit), verdict)
	}
	for _, t := range targets {
		gl, nv, ng := sums[t]["gate-live"], sums[t]["naive-httputil"], sums[t]["nginx-proxy"]
		check(fmt.Sprintf("gate-live / naive-httputil, %s req/s", t), gl.rps/nv.rps, 1.0, "x", true, nv.rps > 0, join(perRound(gl, nv)+cpuRatio(gl, nv), errNote(gl, nv)))
		check(fmt.Sprintf("gate-live / nginx-proxy, %s req/s", t), gl.rps/ng.rps, 0.5, "x", true, ng.rps > 0, join(perRound(gl, ng)+cpuRatio(gl, ng), errNote(gl, ng)))
	}
	{
		ro, gl := sums["page"]["gate-readonly"], sums["page"]["gate-live"]
		check("gate-readonly / gate-live, page req/s", ro.rps/gl.rps, 0.67, "x", true, gl.rps > 0, join(perRound(ro, gl)+cpuRatio(ro, gl), errNote(ro, gl)))
	}
	mb := func(key string) (float64, bool) {
		v, err := strconv.ParseFloat(mem[key], 64)
		return v * 1024 / 1e6, err == nil
	}
	for _, kind := range []struct{ key, label string }{{"held", "held open, idle"}, {"busy", "all busy (wrk)"}} {
		for _, n := range []struct{ key, label string }{{"live", "gate-live"}, {"readonly", "gate-readonly"}} {
			k := kind.key + "." + n.key
			v, ok := mb(k + ".hwm_kb")
			check(fmt.Sprintf("RSS with %s connections %s, %s (VmHWM)", connsOf(meta["settings"]), kind.label, n.label), v, 50, "MB", false, ok,
				fmt.Sprintf("%s established", mem[k+".established"]))
		}
	}
	{
		before, ok1 := mb("upload.before_hwm_kb")
		after, ok2 := mb("upload.after_hwm_kb")
		note := ""
		if mem["upload.bytes_sent"] != mem["upload.bytes_expected"] || mem["upload.http_code"] != "200" {
			note = fmt.Sprintf("upload incomplete: HTTP %s, %s of %s bytes", mem["upload.http_code"], mem["upload.bytes_sent"], mem["upload.bytes_expected"])
		}
		check("RSS growth during the upload, gate-live (VmHWM after − before)", after-before, 20, "MB", false, ok1 && ok2, note)
	}
	fmt.Fprintf(&tg, "\nFor reference (no target): nginx-proxy / naive-httputil is %s on the page and %s on JSON (the issue measured about 2.9x); p99 on the page: nginx-proxy %.2f ms, naive-httputil %.2f ms, gate-live %.2f ms, gate-readonly %.2f ms.\n",
		ratio(sums["page"]["nginx-proxy"].rps, sums["page"]["naive-httputil"].rps), ratio(sums["json"]["nginx-proxy"].rps, sums["json"]["naive-httputil"].rps),
		sums["page"]["nginx-proxy"].p99, sums["page"]["naive-httputil"].p99, sums["page"]["gate-live"].p99, sums["page"]["gate-readonly"].p99)
	fmt.Fprintf(w, "## Targets\n\n%s\n", tg.String())

	// Memory detail.
	fmt.Fprintf(w, "## Memory\n\n")
	fmt.Fprintf(w, "VmRSS and VmHWM from /proc/PID/status of a fresh process for each test (`ckanops gate`; the naive proxy for comparison, no target) (KiB converted to MB = 10^6 bytes). \"peak (sampled)\" is the largest VmRSS seen while sampling every 0.2 s.\n\n")
	fmt.Fprintf(w, "| process | connections | idle RSS (before) | established | peak RSS (sampled) | HWM after | RSS after |\n| --- | --- | ---: | ---: | ---: | ---: | ---: |\n")
	for _, kind := range []struct{ key, label string }{{"held", "held open, idle (holdconns)"}, {"busy", "all busy (wrk)"}} {
		for _, n := range []struct{ key, label string }{{"live", "gate-live"}, {"readonly", "gate-readonly"}, {"naive", "naive-httputil"}} {
			k := kind.key + "." + n.key
			if mem[k+".idle_rss_kb"] == "" {
				continue
			}
			fmt.Fprintf(w, "| %s | %s %s | %s | %s | %s | %s | %s |\n", n.label, connsOf(meta["settings"]), kind.label,
				kbMB(mem[k+".idle_rss_kb"]), mem[k+".established"],
				kbMB(mem[k+".peak_rss_kb"]), kbMB(mem[k+".hwm_kb"]), kbMB(mem[k+".after_rss_kb"]))
		}
	}
	for _, n := range []string{"live", "readonly", "naive"} {
		if v := mem["held."+n+".holdconns"]; v != "" {
			fmt.Fprintf(w, "\nholdconns against %s: %s.", n, v)
		}
	}
	for _, n := range []string{"live", "readonly", "naive"} {
		if r, err := parseWrk(filepath.Join(dir, "raw", "wrk-mem-"+n+".txt")); err == nil {
			fmt.Fprintf(w, "\nwrk against %s with %s connections: %.0f req/s, p50 %.2f ms, p99 %.2f ms, non-2xx %d, socket errors: %s.", n, connsOf(meta["settings"]), r.rps, r.p50, r.p99, r.non2xx, orNone(r.sockErrors))
		}
	}
	fmt.Fprintf(w, "\n\nUpload: `curl -T` of a %s sparse file (Content-Length set), POST through a fresh live gate to `bench/discard`: HTTP %s, %s bytes sent of %s, %s s",
		mem["upload.bytes_expected"], mem["upload.http_code"], mem["upload.bytes_sent"], mem["upload.bytes_expected"], mem["upload.seconds"])
	if secs, err := strconv.ParseFloat(mem["upload.seconds"], 64); err == nil && secs > 0 {
		n, _ := strconv.ParseFloat(mem["upload.bytes_sent"], 64)
		fmt.Fprintf(w, " (%.0f MB/s)", n/secs/1e6)
	}
	fmt.Fprintf(w, "; upstream answered `%s`.\n\n", mem["upload.upstream_answer"])
	fmt.Fprintf(w, "| upload | RSS before | HWM before | peak RSS (sampled) | HWM after | RSS after |\n| --- | ---: | ---: | ---: | ---: | ---: |\n")
	fmt.Fprintf(w, "| gate-live | %s | %s | %s | %s | %s |\n\n", kbMB(mem["upload.before_rss_kb"]), kbMB(mem["upload.before_hwm_kb"]),
		kbMB(mem["upload.peak_rss_kb"]), kbMB(mem["upload.after_hwm_kb"]), kbMB(mem["upload.after_rss_kb"]))

	if ms, err := os.ReadFile(filepath.Join(dir, "prof", "conns-memstats.txt")); err == nil {
		heap, _ := os.ReadFile(filepath.Join(dir, "prof", "conns-heap.txt"))
		fmt.Fprintf(w, "Where the memory goes with %s busy connections: a `bench/profgate` live gate under the same wrk load, 4 s in (goroutine count, runtime.MemStats, heap profile by in-use space):\n\n```\n%s```\n\n<details><summary>heap profile</summary>\n\n```\n%s```\n\n</details>\n\n",
			connsOf(meta["settings"]), ms, trimPprof(heap))
	}

	// Problems seen.
	var problems []string
	for _, r := range all {
		if r.non2xx > 0 || r.sockErrors != "" {
			problems = append(problems, fmt.Sprintf("%s %s %s: non-2xx %d, socket errors: %s", r.target, r.contender, r.label, r.non2xx, orNone(r.sockErrors)))
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, "nginx-proxy.tempfile-warnings")); err == nil {
		if n := strings.TrimSpace(string(b)); n != "" && n != "0" {
			problems = append(problems, "nginx-proxy buffered "+n+" responses to a temporary file (proxy_buffers too small for the page)")
		}
	}
	fmt.Fprintf(w, "## Errors seen\n\n")
	if len(problems) == 0 {
		fmt.Fprintf(w, "None: every wrk run had only 2xx answers and no socket errors.\n\n")
	} else {
		for _, p := range problems {
			fmt.Fprintf(w, "- %s\n", p)
		}
		fmt.Fprintln(w)
	}

	// Profiles.
	if profs, _ := filepath.Glob(filepath.Join(dir, "prof", "*.gate.txt")); len(profs) > 0 {
		fmt.Fprintf(w, "## CPU profiles\n\n")
		fmt.Fprintf(w, "A `bench/profgate` process (the gate as `ckanops gate` runs it, plus pprof on a second listener) under the same wrk load, one profile per case. First the profile's flat top (all code), then the project's own functions only, by cumulative time, with their share of the whole profile.\n\n")
		for _, p := range profs {
			name := strings.TrimSuffix(filepath.Base(p), ".gate.txt")
			flat, _ := os.ReadFile(filepath.Join(dir, "prof", name+".flat.txt"))
			gate, _ := os.ReadFile(p)
			fmt.Fprintf(w, "<details><summary>%s</summary>\n\n```\n%s```\n\n```\n%s```\n\n</details>\n\n", name, trimPprof(flat), trimPprof(gate))
		}
	}

	// The Go benchmark.
	if b, err := os.ReadFile(filepath.Join(dir, "gobench.txt")); err == nil {
		fmt.Fprintf(w, "## Go benchmark (same machine, same hour)\n\n`go test -run='^$' -bench=Proxy -benchmem -count=%s ./gate/`: the same page and JSON from an in-process upstream, each contender on loopback, one process (see `gate/bench_test.go`). ns/op is wall time per request over all client goroutines: its inverse ratios are throughput ratios. The ratios below use the median ns/op of the %s passes (each pass runs every sub-benchmark once, in turn).\n\n", meta["gobench_count"], meta["gobench_count"])
		if rs := goBenchRatios(string(b)); rs != "" {
			fmt.Fprintf(w, "%s\n", rs)
		}
		fmt.Fprintf(w, "```\n%s```\n\n", b)
	}

	// Raw.
	fmt.Fprintf(w, "## Raw numbers (every run)\n\n")
	fmt.Fprintf(w, "CPU in clock ticks (%s per second, all CPUs together).\n\n", meta["clk_tck"])
	fmt.Fprintf(w, "| target | round | contender | req/s | p50 ms | p99 ms | requests | non-2xx | socket errors | proxy CPU | upstream CPU | wrk CPU | machine busy / total | others' CPU | load after |\n")
	fmt.Fprintf(w, "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |\n")
	for _, r := range all {
		fmt.Fprintf(w, "| %s | %s | %s | %.0f | %.2f | %.2f | %d | %d | %s | %d | %d | %d | %d / %d | %.0f%% | %s |\n", r.target, r.label, r.contender,
			r.rps, r.p50, r.p99, r.requests, r.non2xx, orNone(r.sockErrors), r.cpuProxy, r.cpuUp, r.cpuWrk, r.busy, r.total, r.others(), r.load)
	}
	if cmds, err := os.ReadFile(filepath.Join(dir, "commands.txt")); err == nil {
		fmt.Fprintf(w, "\n## Commands\n\nAs run (`$WORK` is the script's temporary directory). The warm-up runs (%s per contender and target) are not in the tables.\n\n```\n%s```\n", warmupOf(meta["settings"]), cmds)
	}

	if err := os.WriteFile(out, []byte(md.String()), 0o644); err != nil {
		return err
	}
	io.WriteString(os.Stdout, "\n"+summaryMD.String()+"### Targets\n\n"+tg.String()+"\n")
	return nil
}

func cmpAll(xs ...int) int {
	for _, x := range xs {
		if x != 0 {
			return x
		}
	}
	return 0
}

func ratio(a, b float64) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", a/b)
}

func fmtUnit(v float64, unit string) string {
	if unit == "x" {
		return fmt.Sprintf("%.2fx", v)
	}
	return fmt.Sprintf("%.1f %s", v, unit)
}

func kbMB(s string) string {
	v, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return "?"
	}
	return fmt.Sprintf("%.1f MB", v*1024/1e6)
}

func errNote(rs ...*summary) string {
	for _, s := range rs {
		for _, r := range s.rounds {
			if r.non2xx > 0 || r.sockErrors != "" {
				return "errors during the runs: see below"
			}
		}
	}
	return ""
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

func mdCell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int {
		x, _ := strconv.Atoi(a)
		y, _ := strconv.Atoi(b)
		return x - y
	})
	return keys
}

func setting(settings, key string) string {
	for _, f := range strings.Fields(settings) {
		if v, ok := strings.CutPrefix(f, key+"="); ok {
			return v
		}
	}
	return "?"
}

func connsOf(settings string) string  { return setting(settings, "MEM_CONNS") }
func warmupOf(settings string) string { return setting(settings, "WARMUP") }

// trimPprof drops pprof's header lines about the binary and build.
func trimPprof(b []byte) string {
	var out strings.Builder
	for _, l := range strings.SplitAfter(string(b), "\n") {
		if strings.HasPrefix(l, "File:") || strings.HasPrefix(l, "Build ID:") || strings.HasPrefix(l, "Type:") || strings.HasPrefix(l, "Time:") {
			continue
		}
		out.WriteString(l)
	}
	return out.String()
}

func join(a, b string) string {
	if a == "" || b == "" {
		return a + b
	}
	return a + "; " + b
}

var reGoBench = regexp.MustCompile(`(?m)^BenchmarkProxy/(\w+)/([\w-]+?)(?:-\d+)?\s+\d+\s+([0-9.]+) ns/op`)

// goBenchRatios states the Go benchmark's ratios in the targets' terms.
func goBenchRatios(out string) string {
	all := map[string][]float64{} // with -count=N, N values each
	for _, m := range reGoBench.FindAllStringSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(m[3], 64)
		all[m[1]+"/"+m[2]] = append(all[m[1]+"/"+m[2]], v)
	}
	ns := map[string]float64{}
	for k, vs := range all {
		ns[k] = median(vs)
	}
	var b strings.Builder
	for _, t := range targets {
		live, naive, ro := ns[t+"/gate-live"], ns[t+"/naive-httputil"], ns[t+"/gate-readonly"]
		if live == 0 || naive == 0 {
			continue
		}
		fmt.Fprintf(&b, "- %s: gate-live / naive-httputil %.2fx", t, naive/live)
		if ro > 0 {
			fmt.Fprintf(&b, ", gate-readonly / gate-live %.2fx", live/ro)
		}
		b.WriteString(" (throughput)\n")
	}
	return b.String()
}
