#!/usr/bin/env bash
# bench/run.sh: the gate's side-by-side benchmark (see bench/README.md).
#
# One fast upstream (nginx serving a ~50 KB CKAN listing page and a
# package_show JSON answer as static files) and five contenders driven by
# wrk in turn, interleaved over several rounds:
#
#   upstream-direct  the upstream nginx itself
#   nginx-proxy      Debian's nginx, proxy_pass + upstream keepalive
#   naive-httputil   httputil.NewSingleHostReverseProxy (bench/naiveproxy)
#   gate-live        `ckanops gate`, mode live
#   gate-readonly    `ckanops gate`, mode read-only (the page is annotated)
#
# then the gate's memory (idle; 1,000 busy connections; 1,000 connections held
# open and idle; a 1 GiB upload), CPU profiles of a gate under wrk, and the
# in-process Go benchmark. Writes bench/RESULTS.md (and prints a summary).
#
# Every load run is bounded in time; every process started here is stopped
# on exit, by its own process id. Loopback (127.0.0.1) only.
#
# Settings (environment):
#   DURATION=10s      wrk duration per contender, target and round
#   ROUNDS=3          interleaved rounds; the tables show the median
#   CONNS=32 THREADS=2
#   WARMUP=2s         one warm-up run per contender and target
#   MEM_CONNS=1000 MEM_DURATION=10s
#   UPLOAD_SIZE=1G    upload size (as for truncate -s)
#   PROFILE=1 PROFILE_SECONDS=10   CPU profiles (0: skip)
#   GOBENCH=1 GOBENCH_TIME=1s GOBENCH_COUNT=3   also run go test -bench=Proxy ./gate/ (0: skip)
#   MAX_BUSY=20 LOAD_WAIT=600      before starting, wait (at most LOAD_WAIT s) until other work keeps the CPUs less than MAX_BUSY % busy
#   OUT=bench/RESULTS.md           where the report goes
#   KEEP=0            1: keep the work directory (raw wrk output, logs, profiles)
set -euo pipefail

DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-32}
THREADS=${THREADS:-2}
WARMUP=${WARMUP:-2s}
MEM_CONNS=${MEM_CONNS:-1000}
MEM_DURATION=${MEM_DURATION:-10s}
UPLOAD_SIZE=${UPLOAD_SIZE:-1G}
PROFILE=${PROFILE:-1}
PROFILE_SECONDS=${PROFILE_SECONDS:-10}
GOBENCH=${GOBENCH:-1}
GOBENCH_TIME=${GOBENCH_TIME:-1s}
GOBENCH_COUNT=${GOBENCH_COUNT:-3}
MAX_BUSY=${MAX_BUSY:-20}
LOAD_WAIT=${LOAD_WAIT:-600}
KEEP=${KEEP:-0}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=${OUT:-$repo/bench/RESULTS.md}
CONTENDERS=(upstream-direct nginx-proxy naive-httputil gate-live gate-readonly)
TARGETS=(page json)
TOKEN="bench-ops-token-$(od -An -tx1 -N16 /dev/urandom | tr -d " \n")" # 48 characters: the gate wants at least 32

log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- tools
need_install=()
command -v nginx >/dev/null || need_install+=(nginx)
command -v wrk >/dev/null || need_install+=(wrk)
command -v curl >/dev/null || need_install+=(curl)
if ((${#need_install[@]})); then
	[[ $(id -u) == 0 ]] || die "missing ${need_install[*]}: install them (apt-get install -y nginx-light wrk curl) or run as root"
	log "installing ${need_install[*]}"
	apt-get update -qq
	pkgs=(wrk curl)
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light "${pkgs[@]}" ||
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx "${pkgs[@]}"
fi
command -v go >/dev/null || die "go is not on PATH"
NGINX=$(command -v nginx)

# ---------------------------------------------------------------- work dir, cleanup
work=$(mktemp -d /tmp/ckanops-bench.XXXXXX)
chmod 755 "$work" # nginx workers (user nobody) read the static files
bin=$work/bin raw=$work/raw prof=$work/prof
mkdir -p "$bin" "$raw" "$prof" "$work/www" "$work/state"
pids=()       # processes started here, stopped on exit
nginx_pids=() # nginx pid files

cleanup() {
	local rc=$?
	set +e
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	for f in "${nginx_pids[@]}"; do [[ -s $f ]] && kill -QUIT "$(cat "$f")" 2>/dev/null; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
	sleep 0.5
	if [[ $KEEP == 1 || $rc != 0 ]]; then
		log "work directory kept: $work"
	else
		rm -rf "$work"
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
log "open files limit: $(ulimit -n)"

commands=$work/commands.txt
meta=$work/meta.tsv
note() { printf '%s\t%s\n' "$1" "$2" >>"$meta"; }
cmdlog() { printf '%s\n' "$*" >>"$commands"; }

# ---------------------------------------------------------------- wait for a quiet machine
# busy_pct: how busy the machine is (all CPUs, steal included) over 5 s.
busy_pct() {
	local b0 t0 b1 t1
	read -r b0 t0 < <(awk '/^cpu /{b = $2 + $3 + $4 + $7 + $8 + $9; print b, b + $5 + $6}' /proc/stat)
	sleep 5
	read -r b1 t1 < <(awk '/^cpu /{b = $2 + $3 + $4 + $7 + $8 + $9; print b, b + $5 + $6}' /proc/stat)
	echo $(((b1 - b0) * 100 / (t1 - t0 > 0 ? t1 - t0 : 1)))
}
# Start after three quiet samples in a row (15 s), or after LOAD_WAIT s anyway.
waited=0 quiet=0 said=0
while ((waited < LOAD_WAIT)); do
	busy=$(busy_pct)
	waited=$((waited + 5))
	if ((busy <= MAX_BUSY)); then
		quiet=$((quiet + 1))
		((quiet >= 3)) && break
	else
		quiet=0
		((said++ % 6 == 0)) && log "the machine is ${busy}% busy with other work (> MAX_BUSY=$MAX_BUSY%): waiting (at most ${LOAD_WAIT}s in all)"
	fi
done
((quiet >= 3)) || log "the machine stayed busy for ${LOAD_WAIT}s: measuring anyway (RESULTS.md says how busy it was)"
note busy_start "$busy"
note load_wait_s "$waited"
note load_start "$(cut -d' ' -f1-3 /proc/loadavg)"
note date "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
note nproc "$(nproc)"
note clk_tck "$(getconf CLK_TCK)"
note cpu "$(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)"
note kernel "$(uname -sr)"
note mem_total "$(awk '/MemTotal/{printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
note go "$(go version)"
note nginx "$("$NGINX" -v 2>&1 | sed 's/^nginx version: //')"
note wrk "$(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
note git "$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$repo" diff --quiet 2>/dev/null || echo ' (work tree has uncommitted changes)')"
# Non-test Go files that differ from the commit (other work in progress gets built in).
note dirty "$(git -C "$repo" status --porcelain -- gate cmd config internal ckanclient checks runbook tui 2>/dev/null |
	awk '$NF ~ /\.go$/ && $NF !~ /_test\.go$/ {print $NF}' | tr '\n' ' ')"
note settings "DURATION=$DURATION ROUNDS=$ROUNDS CONNS=$CONNS THREADS=$THREADS WARMUP=$WARMUP MEM_CONNS=$MEM_CONNS MEM_DURATION=$MEM_DURATION UPLOAD_SIZE=$UPLOAD_SIZE"

# ---------------------------------------------------------------- build
log "building (go build)"
(
	cd "$repo"
	go build -o "$bin/ckanops" ./cmd/ckanops
	go build -o "$bin/naiveproxy" ./bench/naiveproxy
	go build -o "$bin/discard" ./bench/discard
	go build -o "$bin/holdconns" ./bench/holdconns
	go build -o "$bin/pagegen" ./bench/pagegen
	go build -o "$bin/report" ./bench/report
	if [[ $PROFILE == 1 ]]; then go build -o "$bin/profgate" ./bench/profgate; fi
)
"$bin/pagegen" -dir "$work/www" >&2
chmod 755 "$work/www"
note page_bytes "$(stat -c %s "$work/www/dataset.html")"
note json_bytes "$(stat -c %s "$work/www/package_show.json")"
PAGE_PATH=/dataset/
JSON_PATH='/api/3/action/package_show?id=air-quality-2024'

# ---------------------------------------------------------------- ports
used_ports=" "
# free_port VAR: a port nobody listens on, below the ephemeral range.
free_port() {
	local p
	for _ in $(seq 1 500); do
		p=$((20000 + RANDOM % 12000))
		[[ $used_ports == *" $p "* ]] && continue
		if ! ss -ltnH "sport = :$p" | grep -q . && ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			used_ports+="$p "
			printf -v "$1" '%s' "$p"
			return 0
		fi
	done
	die "no free port found"
}
# wait_http URL: until URL answers 2xx (at most 15 s).
wait_http() {
	for _ in $(seq 1 150); do
		curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	die "$1 did not come up"
}

# ---------------------------------------------------------------- upstream nginx and nginx-proxy
free_port UP_PORT
free_port NGX_PORT
nginx_common() { # $1: name
	cat <<EOF
worker_processes auto;
worker_rlimit_nofile $(ulimit -n);
pid $work/nginx-$1.pid;
error_log $work/nginx-$1.err warn;
events { worker_connections 8192; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_timeout 65;
    keepalive_requests 1000000;
    gzip off;
    server_tokens off;
    client_body_temp_path $work/nginx-$1-tmp/body;
    proxy_temp_path $work/nginx-$1-tmp/proxy;
    fastcgi_temp_path $work/nginx-$1-tmp/fastcgi;
    uwsgi_temp_path $work/nginx-$1-tmp/uwsgi;
    scgi_temp_path $work/nginx-$1-tmp/scgi;
    types { text/html html; application/json json; }
    default_type application/octet-stream;
EOF
}
mkdir -p "$work/nginx-upstream-tmp" "$work/nginx-proxy-tmp"
{
	nginx_common upstream
	cat <<EOF
    charset utf-8;
    charset_types application/json; # and text/html, always
    server {
        listen 127.0.0.1:$UP_PORT;
        root $work/www;
        location = /dataset/ { try_files /dataset.html =404; }
        location = /api/3/action/package_show { try_files /package_show.json =404; }
    }
}
EOF
} >"$work/nginx-upstream.conf"
{
	nginx_common proxy
	cat <<EOF
    upstream ckan {
        server 127.0.0.1:$UP_PORT;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$NGX_PORT;
        location / {
            proxy_pass http://ckan;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
        }
    }
}
EOF
} >"$work/nginx-proxy.conf"
for n in upstream proxy; do
	"$NGINX" -t -q -p "$work" -e "$work/nginx-$n.err" -c "$work/nginx-$n.conf"
	"$NGINX" -p "$work" -e "$work/nginx-$n.err" -c "$work/nginx-$n.conf"
	nginx_pids+=("$work/nginx-$n.pid")
	cmdlog "nginx -p $work -c $work/nginx-$n.conf   # config below"
done
UP=127.0.0.1:$UP_PORT
wait_http "http://$UP$PAGE_PATH"
wait_http "http://127.0.0.1:$NGX_PORT$PAGE_PATH"

# ---------------------------------------------------------------- Go contenders
free_port NAIVE_PORT
"$bin/naiveproxy" -listen "127.0.0.1:$NAIVE_PORT" -upstream "http://$UP" >"$work/naiveproxy.log" 2>&1 &
pids+=($!)
NAIVE_PID=$!
cmdlog "naiveproxy -listen 127.0.0.1:$NAIVE_PORT -upstream http://$UP"

printf '%s\n' "$TOKEN" >"$work/ops.token"
chmod 600 "$work/ops.token"
# start_gate NAME PORT UPSTREAM [BINARY ARGS...]: a gate with its own state
# file; sets GATE_PID.
start_gate() {
	local name=$1 port=$2 upstream=$3
	shift 3
	cat >"$work/gate-$name.toml" <<EOF
site = "bench"
listen = "127.0.0.1:$port"
upstream = "$upstream"

[state]
file = "$work/state/$name.state.json"

[auth]
ops_token_file = "$work/ops.token"

[audit]
file = "$work/state/$name.audit.jsonl"
EOF
	local cmd=("$bin/ckanops" gate --config "$work/gate-$name.toml" --log-level warn)
	(($#)) && cmd=("$@" -config "$work/gate-$name.toml")
	"${cmd[@]}" >"$work/gate-$name.log" 2>&1 &
	GATE_PID=$!
	pids+=("$GATE_PID")
	cmdlog "${cmd[*]#"$bin/"}"
	wait_http "http://127.0.0.1:$port/-/ckanops/status"
}
# set_mode PORT MODE
set_mode() {
	curl -fsS -o /dev/null -X POST -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
		-d "{\"mode\": \"$2\", \"message\": \"Scheduled maintenance: the catalogue is read-only while we upgrade CKAN.\", \"for\": \"2h\", \"reason\": \"benchmark\"}" \
		"http://127.0.0.1:$1/-/ckanops/mode"
	cmdlog "curl -X POST -H 'Authorization: Bearer <ops token>' -d '{\"mode\": \"$2\", ...}' http://127.0.0.1:$1/-/ckanops/mode"
}

free_port LIVE_PORT
start_gate live "$LIVE_PORT" "http://$UP"
LIVE_PID=$GATE_PID
free_port RO_PORT
start_gate readonly "$RO_PORT" "http://$UP"
RO_PID=$GATE_PID
set_mode "$RO_PORT" read-only

declare -A ADDR PROXY_PIDS
ADDR[upstream-direct]=$UP
ADDR[nginx-proxy]=127.0.0.1:$NGX_PORT
ADDR[naive-httputil]=127.0.0.1:$NAIVE_PORT
ADDR[gate-live]=127.0.0.1:$LIVE_PORT
ADDR[gate-readonly]=127.0.0.1:$RO_PORT
nginx_workers() { pgrep -P "$(cat "$work/nginx-$1.pid")" | tr '\n' ' '; }
UP_WORKERS=$(nginx_workers upstream)
PROXY_PIDS[upstream-direct]=""
PROXY_PIDS[nginx-proxy]=$(nginx_workers proxy)
PROXY_PIDS[naive-httputil]=$NAIVE_PID
PROXY_PIDS[gate-live]=$LIVE_PID
PROXY_PIDS[gate-readonly]=$RO_PID

# ---------------------------------------------------------------- check what each contender answers
log "checking the answers"
for c in "${CONTENDERS[@]}"; do
	for t in "${TARGETS[@]}"; do
		p=$PAGE_PATH f=dataset.html
		[[ $t == json ]] && p=$JSON_PATH f=package_show.json
		curl -fsS -D "$work/check-$c-$t.headers" -o "$work/check-$c-$t.body" "http://${ADDR[$c]}$p"
		if [[ $c == gate-readonly && $t == page ]]; then
			grep -q 'class="ckanops-banner"' "$work/check-$c-$t.body" || die "$c: the page has no banner"
			grep -q 'action="/user/_logout"' "$work/check-$c-$t.body" || die "$c: the logout form is gone"
			note readonly_forms_replaced "$(grep -o 'class="ckanops-form-notice"' "$work/check-$c-$t.body" | wc -l)"
			note readonly_page_bytes "$(stat -c %s "$work/check-$c-$t.body")"
		else
			cmp -s "$work/check-$c-$t.body" "$work/www/$f" || die "$c $t: the body differs from the upstream's file"
		fi
	done
done

# ---------------------------------------------------------------- throughput and latency
cpu_ticks() { # utime+stime of the given pids, in clock ticks
	local t=0 p
	for p in "$@"; do
		[[ -r /proc/$p/stat ]] || continue
		t=$((t + $(awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$p/stat")))
	done
	echo "$t"
}
# run_wrk CONTENDER TARGET LABEL DURATION
# machine_ticks: busy and total CPU ticks of the whole machine (all CPUs);
# steal counts as busy (CPU the VM did not get).
machine_ticks() { awk '/^cpu /{b = $2 + $3 + $4 + $7 + $8 + $9; print b, b + $5 + $6}' /proc/stat; }
# waited_children_ticks: CPU of this shell's finished children (wrk, after it exits).
waited_children_ticks() { awk '{sub(/^.*\) /, ""); print $14 + $15}' "/proc/$$/stat"; }
run_wrk() {
	local c=$1 t=$2 label=$3 d=$4 p=$PAGE_PATH
	[[ $t == json ]] && p=$JSON_PATH
	local out=$raw/wrk-$t-$c-$label.txt
	local p0 u0 w0 b0 t0 p1 u1 w1 b1 t1
	# shellcheck disable=SC2086
	p0=$(cpu_ticks ${PROXY_PIDS[$c]})
	u0=$(cpu_ticks $UP_WORKERS)
	w0=$(waited_children_ticks)
	read -r b0 t0 < <(machine_ticks)
	wrk -t"$THREADS" -c"$CONNS" -d"$d" --latency "http://${ADDR[$c]}$p" >"$out" 2>&1 || true
	read -r b1 t1 < <(machine_ticks)
	w1=$(waited_children_ticks)
	# shellcheck disable=SC2086
	p1=$(cpu_ticks ${PROXY_PIDS[$c]})
	u1=$(cpu_ticks $UP_WORKERS)
	# "others": CPU the rest of the machine (other agents' builds and
	# tests, the kernel's own threads, steal) used during the run.
	printf 'cpu_ticks_proxy\t%s\ncpu_ticks_upstream\t%s\ncpu_ticks_wrk\t%s\ncpu_ticks_machine_busy\t%s\ncpu_ticks_machine_total\t%s\nclk_tck\t%s\nloadavg\t%s\n' \
		$((p1 - p0)) $((u1 - u0)) $((w1 - w0)) $((b1 - b0)) $((t1 - t0)) "$(getconf CLK_TCK)" \
		"$(cut -d' ' -f1-3 /proc/loadavg)" >"$out.meta"
}
cmdlog "wrk -t$THREADS -c$CONNS -d$DURATION --latency http://<contender>$PAGE_PATH"
cmdlog "wrk -t$THREADS -c$CONNS -d$DURATION --latency 'http://<contender>$JSON_PATH'"

log "warm-up: $WARMUP per contender and target"
for c in "${CONTENDERS[@]}"; do
	for t in "${TARGETS[@]}"; do run_wrk "$c" "$t" warmup "$WARMUP"; done
done
for ((r = 1; r <= ROUNDS; r++)); do
	# Rotate the order each round so drift and neighbours' load fall on all.
	order=("${CONTENDERS[@]:$(((r - 1) % ${#CONTENDERS[@]}))}" "${CONTENDERS[@]:0:$(((r - 1) % ${#CONTENDERS[@]}))}")
	log "round $r/$ROUNDS: ${order[*]} (load $(cut -d' ' -f1-3 /proc/loadavg))"
	printf '%s\t%s\n' "$r" "$(cut -d' ' -f1-3 /proc/loadavg)" >>"$work/load-rounds.tsv"
	for t in "${TARGETS[@]}"; do
		for c in "${order[@]}"; do run_wrk "$c" "$t" "r$r" "$DURATION"; done
	done
done

# The throughput contenders are done: stop them so that the memory runs
# below have the CPU (the upstream nginx stays).
kill "$NAIVE_PID" "$LIVE_PID" "$RO_PID" 2>/dev/null || true
wait "$NAIVE_PID" "$LIVE_PID" "$RO_PID" 2>/dev/null || true
kill -QUIT "$(cat "$work/nginx-proxy.pid")" 2>/dev/null || true

# ---------------------------------------------------------------- memory
mem=$work/mem.tsv
kb() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
memnote() { printf '%s\t%s\n' "$1" "$2" >>"$mem"; }
# sample_rss PID OUT WATCH_PID: VmRSS (kB) every 0.2 s while WATCH_PID runs (at most 10 min).
sample_rss() {
	local i=0
	while kill -0 "$3" 2>/dev/null && ((i < 3000)); do
		kb "$1" VmRSS >>"$2" 2>/dev/null || true
		sleep 0.2
		i=$((i + 1))
	done
}
max_of() { sort -n "$1" | tail -1; }

# mem_start NAME: a fresh process (gate live, gate read-only, or the naive
# proxy for comparison); sets MEM_PID and MEM_PORT, records its idle RSS.
mem_start() {
	local name=$1 label=$2
	free_port MEM_PORT
	case $name in
	naive)
		"$bin/naiveproxy" -listen "127.0.0.1:$MEM_PORT" -upstream "http://$UP" >"$work/naive-$label.log" 2>&1 &
		MEM_PID=$!
		pids+=("$MEM_PID")
		wait_http "http://127.0.0.1:$MEM_PORT$JSON_PATH"
		;;
	*)
		start_gate "$label-$name" "$MEM_PORT" "http://$UP"
		MEM_PID=$GATE_PID
		[[ $name == live ]] || set_mode "$MEM_PORT" read-only
		;;
	esac
	sleep 1
	memnote "$label.$name.idle_rss_kb" "$(kb "$MEM_PID" VmRSS)"
	memnote "$label.$name.idle_hwm_kb" "$(kb "$MEM_PID" VmHWM)"
}
mem_stop() {
	memnote "$1.peak_rss_kb" "$(max_of "$work/rss-$1.samples")"
	memnote "$1.hwm_kb" "$(kb "$MEM_PID" VmHWM)"
	memnote "$1.after_rss_kb" "$(kb "$MEM_PID" VmRSS)"
	kill "$MEM_PID"
	wait "$MEM_PID" 2>/dev/null || true
}
established() { ss -tnH state established "( sport = :$1 )" | wc -l; }

# mem_busy NAME: MEM_CONNS connections, every one busy (wrk) for MEM_DURATION.
mem_busy() {
	local name=$1 key=busy.$1
	mem_start "$name" busy
	log "memory: $name, $MEM_CONNS busy connections (wrk) for $MEM_DURATION"
	wrk -t"$THREADS" -c"$MEM_CONNS" -d"$MEM_DURATION" --timeout 10s --latency "http://127.0.0.1:$MEM_PORT$PAGE_PATH" \
		>"$raw/wrk-mem-$name.txt" 2>&1 &
	local wpid=$!
	pids+=("$wpid")
	sample_rss "$MEM_PID" "$work/rss-$key.samples" "$wpid" &
	local spid=$!
	sleep 2
	memnote "$key.established" "$(established "$MEM_PORT")"
	wait "$wpid" || true
	wait "$spid" || true
	mem_stop "$key"
}

# mem_held NAME: MEM_CONNS keep-alive connections, one page each, then held
# open and idle for MEM_DURATION (bench/holdconns).
mem_held() {
	local name=$1 key=held.$1
	mem_start "$name" held
	log "memory: $name, $MEM_CONNS connections held open and idle for $MEM_DURATION"
	rm -f "$work/held.ready"
	"$bin/holdconns" -url "http://127.0.0.1:$MEM_PORT$PAGE_PATH" -n "$MEM_CONNS" -hold "$MEM_DURATION" \
		-ready "$work/held.ready" >"$raw/holdconns-$name.txt" 2>&1 &
	local hpid=$!
	pids+=("$hpid")
	sample_rss "$MEM_PID" "$work/rss-$key.samples" "$hpid" &
	local spid=$!
	for _ in $(seq 1 300); do [[ -e $work/held.ready ]] && break; sleep 0.1; done
	sleep 1
	memnote "$key.established" "$(established "$MEM_PORT")"
	memnote "$key.held_rss_kb" "$(kb "$MEM_PID" VmRSS)"
	wait "$hpid" || true
	wait "$spid" || true
	memnote "$key.holdconns" "$(tr -d '\n' <"$raw/holdconns-$name.txt")"
	mem_stop "$key"
}
cmdlog "wrk -t$THREADS -c$MEM_CONNS -d$MEM_DURATION --timeout 10s --latency http://<fresh process>$PAGE_PATH   # VmRSS sampled every 0.2 s, VmHWM after"
cmdlog "holdconns -url http://<fresh process>$PAGE_PATH -n $MEM_CONNS -hold $MEM_DURATION   # one GET per connection, then all held open and idle"
for n in live readonly naive; do mem_busy "$n"; done
for n in live readonly naive; do mem_held "$n"; done

# A 1 GiB upload through a fresh live gate to an upstream that discards it.
free_port DISCARD_PORT
"$bin/discard" -listen "127.0.0.1:$DISCARD_PORT" >"$work/discard.log" 2>&1 &
pids+=($!)
cmdlog "discard -listen 127.0.0.1:$DISCARD_PORT"
wait_http "http://127.0.0.1:$DISCARD_PORT/"
free_port UPL_PORT
start_gate upload "$UPL_PORT" "http://127.0.0.1:$DISCARD_PORT"
UPL_PID=$GATE_PID
truncate -s "$UPLOAD_SIZE" "$work/upload.bin" # sparse: no disk, no page cache to speak of
upload_bytes=$(stat -c %s "$work/upload.bin")
curl -fsS -o /dev/null "http://127.0.0.1:$UPL_PORT/api/3/action/status_show" # one request first: connections and pools exist
sleep 1
memnote upload.before_rss_kb "$(kb "$UPL_PID" VmRSS)"
memnote upload.before_hwm_kb "$(kb "$UPL_PID" VmHWM)"
log "memory: a $UPLOAD_SIZE upload through the live gate"
upload_cmd=(curl -sS --max-time 600 -X POST -H 'Content-Type: application/octet-stream' -T "$work/upload.bin"
	-o "$work/upload.answer" -w '%{http_code} %{size_upload} %{time_total}' "http://127.0.0.1:$UPL_PORT/api/3/action/resource_create")
cmdlog "truncate -s $UPLOAD_SIZE upload.bin; curl -X POST -H 'Content-Type: application/octet-stream' -T upload.bin http://<fresh live gate>/api/3/action/resource_create   # upstream: bench/discard"
"${upload_cmd[@]}" >"$work/upload.curl" 2>&1 &
upid=$!
pids+=("$upid")
sample_rss "$UPL_PID" "$work/rss-upload.samples" "$upid" &
spid=$!
wait "$upid" || true
wait "$spid" || true
read -r code sent secs <"$work/upload.curl" || true
memnote upload.http_code "${code:-?}"
memnote upload.bytes_sent "${sent:-?}"
memnote upload.bytes_expected "$upload_bytes"
memnote upload.seconds "${secs:-?}"
memnote upload.upstream_answer "$(tr -d '\n' <"$work/upload.answer" 2>/dev/null)"
memnote upload.peak_rss_kb "$(max_of "$work/rss-upload.samples")"
memnote upload.after_hwm_kb "$(kb "$UPL_PID" VmHWM)"
memnote upload.after_rss_kb "$(kb "$UPL_PID" VmRSS)"
kill "$UPL_PID"
rm -f "$work/upload.bin"

# ---------------------------------------------------------------- CPU profiles
if [[ $PROFILE == 1 ]]; then
	# profile NAME MODE TARGET: a CPU profile of a profgate (gate.Run plus
	# pprof on a second listener) while wrk loads it.
	profile() {
		local name=$1 mode=$2 t=$3 port pp p=$PAGE_PATH
		[[ $t == json ]] && p=$JSON_PATH
		free_port port
		free_port pp
		start_gate "prof-$name" "$port" "http://$UP" "$bin/profgate" -pprof "127.0.0.1:$pp"
		local pid=$GATE_PID
		[[ $mode == live ]] || set_mode "$port" "$mode"
		log "profile: $name ($PROFILE_SECONDS s)"
		wrk -t"$THREADS" -c"$CONNS" -d"$((PROFILE_SECONDS + 3))s" "http://127.0.0.1:$port$p" >"$raw/wrk-prof-$name.txt" 2>&1 &
		local wpid=$!
		pids+=("$wpid")
		sleep 1
		curl -fsS --max-time $((PROFILE_SECONDS + 30)) -o "$prof/$name.pprof" \
			"http://127.0.0.1:$pp/debug/pprof/profile?seconds=$PROFILE_SECONDS"
		wait "$wpid" || true
		kill "$pid"
		wait "$pid" 2>/dev/null || true
		go tool pprof -top -nodecount=25 "$bin/profgate" "$prof/$name.pprof" >"$prof/$name.flat.txt" 2>/dev/null
		# The project's own functions, with their share of the whole profile.
		go tool pprof -top -cum -nodefraction=0 -nodecount=100000 "$bin/profgate" "$prof/$name.pprof" 2>/dev/null |
			grep -E '^Duration|flat%|github\.com/ckanops/ckanops/' | head -32 >"$prof/$name.gate.txt" || true
	}
	cmdlog "profgate -config gate.toml -pprof 127.0.0.1:<port>; wrk -t$THREADS -c$CONNS -d$((PROFILE_SECONDS + 3))s ...; curl /debug/pprof/profile?seconds=$PROFILE_SECONDS"
	cmdlog "go tool pprof -top -nodecount=25 profgate <profile>; go tool pprof -top -cum -nodefraction=0 profgate <profile> | grep github.com/ckanops/ckanops/"
	# memprofile: where a live gate's memory goes while it holds MEM_CONNS
	# connections (heap profile, runtime.MemStats, goroutines).
	memprofile() {
		local port pp
		free_port port
		free_port pp
		start_gate prof-mem "$port" "http://$UP" "$bin/profgate" -pprof "127.0.0.1:$pp"
		local pid=$GATE_PID
		log "heap profile: live gate with $MEM_CONNS connections"
		wrk -t"$THREADS" -c"$MEM_CONNS" -d8s --timeout 10s "http://127.0.0.1:$port$PAGE_PATH" >"$raw/wrk-prof-mem.txt" 2>&1 &
		local wpid=$!
		pids+=("$wpid")
		sleep 4
		curl -fsS --max-time 30 -o "$prof/conns-heap.pprof" "http://127.0.0.1:$pp/debug/pprof/heap"
		curl -fsS --max-time 30 -o "$prof/conns-goroutines.txt" "http://127.0.0.1:$pp/debug/pprof/goroutine?debug=1"
		head -1 "$prof/conns-goroutines.txt" >"$prof/conns-memstats.txt"
		printf '# VmRSS = %s kB, connections established: %s\n' "$(kb "$pid" VmRSS)" \
			"$(ss -tnH state established "( sport = :$port )" | wc -l)" >>"$prof/conns-memstats.txt"
		curl -fsS --max-time 30 -o "$prof/conns-heap.debug.txt" "http://127.0.0.1:$pp/debug/pprof/heap?debug=1"
		sed -n '/^# runtime.MemStats/,$p' "$prof/conns-heap.debug.txt" |
			grep -E '^# (runtime|Sys|HeapSys|HeapAlloc|HeapInuse|HeapIdle|HeapReleased|Stack|MSpan|GCSys|OtherSys|NextGC|NumGC) ' \
			>>"$prof/conns-memstats.txt" || true
		wait "$wpid" || true
		kill "$pid"
		wait "$pid" 2>/dev/null || true
		go tool pprof -top -nodecount=20 -sample_index=inuse_space "$bin/profgate" "$prof/conns-heap.pprof" \
			>"$prof/conns-heap.txt" 2>/dev/null
	}
	profile live-page live page
	profile live-json live json
	profile readonly-page read-only page
	memprofile
fi

# ---------------------------------------------------------------- the Go benchmark, same machine, same hour
if [[ $GOBENCH == 1 ]]; then
	log "go test -bench=Proxy ./gate/ (benchtime $GOBENCH_TIME, count $GOBENCH_COUNT)"
	note gobench_count "$GOBENCH_COUNT"
	cmdlog "go test -run='^\$' -bench=Proxy -benchmem -benchtime=$GOBENCH_TIME -count=$GOBENCH_COUNT ./gate/"
	(cd "$repo" && go test -run='^$' -bench=Proxy -benchmem -benchtime="$GOBENCH_TIME" -count="$GOBENCH_COUNT" ./gate/) >"$work/gobench.txt" 2>&1 ||
		log "the Go benchmark failed: see $work/gobench.txt"
fi

# ---------------------------------------------------------------- report
note load_end "$(cut -d' ' -f1-3 /proc/loadavg)"
grep -c 'buffered to a temporary file' "$work/nginx-proxy.err" >"$work/nginx-proxy.tempfile-warnings" 2>/dev/null || true
{
	echo
	echo "# nginx-upstream.conf"
	cat "$work/nginx-upstream.conf"
	echo
	echo "# nginx-proxy.conf"
	cat "$work/nginx-proxy.conf"
	echo
	echo "# gate-live.toml (gate-readonly: the same with its own state file, then POST /-/ckanops/mode read-only)"
	sed "s#$work#\$WORK#g" "$work/gate-live.toml"
} >>"$commands"
sed -i "s#$work/bin/##g; s#$work#\$WORK#g" "$commands"
"$bin/report" -dir "$work" -out "$OUT"
OUT="$OUT" "$(dirname "$0")/announce.sh"
log "wrote $OUT"
