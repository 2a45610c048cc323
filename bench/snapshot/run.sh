#!/usr/bin/env bash
# bench/snapshot/run.sh: ckanops' snapshot against pg_dump -Fc + tar by hand.
#
# Starts a throwaway Postgres cluster on a free port of 127.0.0.1, fills a
# CKAN database of about 1 GB (pgbench -i) and a small DataStore database,
# writes about 1 GB of incompressible storage in CKAN's
# resources/xxx/yyy/zzz layout, then runs ROUNDS interleaved rounds (the
# order rotates each round) of three contenders (seven with PARTS=1):
#
#   by-hand-seq   pg_dump -Fc ckan > f1; pg_dump -Fc datastore > f2;
#                 tar -cf f3 -C storage .      (one after the other)
#   by-hand-par   the same three started together (& ... wait)
#   ckanops       bench/snapshot: runbook/snapshot.Take once (both dumps and
#                 the Go tar concurrently, hashed as written, fsynced, row
#                 counters and storage digest before/after, the statistics
#                 settle wait), as one program
#
# Each contender's wall time is taken around the whole command; right after
# it, a `sync` is timed on its own (the by-hand commands leave their output
# in the page cache; ckanops fsyncs its files before it returns), so the
# summary gives the by-hand times with and without that sync. Before each
# contender: previous outputs removed, `sync`, page cache dropped (when
# DROP_CACHES=1 and /proc/sys/vm/drop_caches is writable), 1 s pause.
#
# Settings (environment):
#   ROUNDS=3          interleaved rounds; the summary shows medians
#   SCALE=68          pgbench scale of the ckan database (68: about 1 GB)
#   STORAGE_MB=1024   storage size, MiB
#   DROP_CACHES=1     drop the page cache before each contender (root only; 0: warm cache)
#   MAX_LOAD=1.5 LOAD_WAIT=300   before starting, wait (at most LOAD_WAIT s) for the 1-min load to fall below MAX_LOAD
#   MAX_BUSY=25 BUSY_WAIT=120    before each contender, wait (at most BUSY_WAIT s) until other work keeps the
#                     CPUs less than MAX_BUSY % busy (measured over 3 s while nothing of ours runs)
#   TMPDIR=/tmp       where the work directories go (about 4 GB free: cluster, storage, one set of outputs)
#   PARTS=0           1: also time the parts alone, to see where ckanops' extra time goes:
#                     tar-by-hand (tar -cf) vs tar-ckanops (Take with only the storage), and
#                     dumps-by-hand (both pg_dumps in parallel) vs dumps-ckanops (Take with only the databases)
#   KEEP=0            1: keep the work directory (raw times, logs, one set of outputs)
#
# Postgres runs with fsync=off while the databases are filled (setup only);
# it is switched back on, after a CHECKPOINT, before anything is measured.
# As root, Postgres runs as the postgres user. Everything started here is
# stopped on exit; the temporary directories are removed.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
SCALE=${SCALE:-68}
STORAGE_MB=${STORAGE_MB:-1024}
DROP_CACHES=${DROP_CACHES:-1}
MAX_LOAD=${MAX_LOAD:-1.5}
LOAD_WAIT=${LOAD_WAIT:-300}
MAX_BUSY=${MAX_BUSY:-25}
BUSY_WAIT=${BUSY_WAIT:-120}
PARTS=${PARTS:-0}
KEEP=${KEEP:-0}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
log() { printf '[snapbench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

GO=$(command -v go || echo /usr/local/go/bin/go)
[[ -x $GO ]] || die "go not found"
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[[ -n $pgbin && -x $pgbin/postgres ]] || die "no PostgreSQL server in /usr/lib/postgresql/*/bin"
PGDUMP=$pgbin/pg_dump
command -v tar >/dev/null || die "tar not found"

# ---------------------------------------------------------------- work dirs, cleanup
work=$(mktemp -d "${TMPDIR:-/tmp}/ckanops-snapbench.XXXXXX")
pgwork=$(mktemp -d "${TMPDIR:-/tmp}/ckanops-snapbench-pg.XXXXXX")
asuser=()
if [[ $(id -u) == 0 ]]; then
	id postgres >/dev/null 2>&1 || die "running as root needs a postgres user to run the server as"
	chown postgres: "$pgwork"
	asuser=(runuser -u postgres --)
fi
pgdata=$pgwork/data
pg_started=0
cleanup() {
	local rc=$?
	if ((pg_started)); then
		"${asuser[@]}" "$pgbin/pg_ctl" -D "$pgdata" -m fast -w stop >/dev/null 2>&1 || true
	fi
	rm -rf "$pgwork"
	if [[ $KEEP == 1 ]]; then
		log "kept $work"
	else
		rm -rf "$work"
	fi
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

storage=$work/storage out=$work/out raw=$work/raw
mkdir -p "$storage" "$out" "$raw"

# ---------------------------------------------------------------- wait for a quiet machine
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }
waited=0
while awk -v l="$(cut -d' ' -f1 /proc/loadavg)" -v m="$MAX_LOAD" 'BEGIN{exit !(l >= m)}'; do
	((waited < LOAD_WAIT)) || { log "load still $(loadavg) after ${LOAD_WAIT}s: going on anyway"; break; }
	log "load $(loadavg): waiting for it to fall below $MAX_LOAD"
	sleep 15
	waited=$((waited + 15))
done
load_start=$(loadavg)

# ---------------------------------------------------------------- Postgres
free_port() {
	local p
	for _ in $(seq 1 200); do
		p=$((20000 + RANDOM % 20000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return
		fi
	done
	die "no free port found"
}
PORT=$(free_port)
log "initdb in $pgdata (PostgreSQL $("$pgbin/postgres" --version | awk '{print $NF}'), port $PORT)"
"${asuser[@]}" "$pgbin/initdb" -D "$pgdata" -U postgres --auth=trust -E UTF8 --locale=C --no-sync >"$raw/initdb.log" 2>&1 ||
	die "initdb failed: $(tail -5 "$raw/initdb.log")"
cat >>"$pgdata/postgresql.conf" <<EOF
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$pgwork'
fsync = off                 # setup only: turned on (ALTER SYSTEM) before measuring
synchronous_commit = off
full_page_writes = off
max_wal_size = 4GB
EOF
"${asuser[@]}" "$pgbin/pg_ctl" -D "$pgdata" -l "$pgwork/postgres.log" -w start >/dev/null ||
	die "postgres did not start: $(tail -5 "$pgwork/postgres.log" 2>/dev/null)"
pg_started=1

psql() { "$pgbin/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres "$@"; }
psql -d postgres -c 'CREATE DATABASE ckan' -c 'CREATE DATABASE datastore'

log "pgbench -i -s $SCALE into ckan"
t0=$(date +%s)
"$pgbin/pgbench" -i -q -s "$SCALE" -h 127.0.0.1 -p "$PORT" -U postgres ckan >"$raw/pgbench.log" 2>&1 ||
	die "pgbench -i failed: $(tail -5 "$raw/pgbench.log")"
log "pgbench -i took $(($(date +%s) - t0)) s"
psql -d datastore <<'EOF'
CREATE TABLE "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d" (
  _id serial PRIMARY KEY, _full_text tsvector, station text, measured_at timestamptz, pm25 numeric, pm10 numeric, note text);
INSERT INTO "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d" (station, measured_at, pm25, pm10, note)
  SELECT 'station-' || (i % 40), timestamptz '2024-01-01' + i * interval '10 minutes',
         round((random() * 80)::numeric, 2), round((random() * 120)::numeric, 2), md5(i::text)
  FROM generate_series(1, 5000) AS i;
UPDATE "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d" SET _full_text = to_tsvector(station || ' ' || note);
CREATE TABLE _table_metadata_bench (name text PRIMARY KEY, alias_of text);
INSERT INTO _table_metadata_bench VALUES ('0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d', NULL);
EOF
psql -d ckan -c 'VACUUM ANALYZE'
psql -d datastore -c 'VACUUM ANALYZE'
psql -d postgres -c 'CHECKPOINT' -c 'ALTER SYSTEM SET fsync = on' -c 'ALTER SYSTEM SET synchronous_commit = on' \
	-c 'ALTER SYSTEM SET full_page_writes = on' -c 'SELECT pg_reload_conf()' >/dev/null
sleep 1
[[ $(psql -d postgres -Atc 'SHOW fsync') == on ]] || die "fsync did not come back on"
ckan_db_size=$(psql -d ckan -Atc "SELECT pg_database_size('ckan')")
ds_db_size=$(psql -d ckan -Atc "SELECT pg_database_size('datastore')")
log "ckan database: $(psql -d ckan -Atc "SELECT pg_size_pretty(pg_database_size('ckan'))") ($ckan_db_size bytes); datastore: $ds_db_size bytes"

# ---------------------------------------------------------------- storage
log "writing ${STORAGE_MB} MiB of storage (incompressible, /dev/urandom)"
RANDOM=4242 # the same tree every run
# rnd MIN MAX and uuid set REPLY and ID without a subshell, so that RANDOM's
# sequence (seeded above) gives the same tree every run
rnd() { REPLY=$(((RANDOM << 15 | RANDOM) % ($2 - $1 + 1) + $1)); }
uuid() { printf -v ID '%04x%04x-%04x-4%03x-%04x-%04x%04x%04x' $RANDOM $RANDOM $RANDOM $((RANDOM % 4096)) $((RANDOM | 32768)) $RANDOM $RANDOM $RANDOM; }
budget=$((STORAGE_MB << 20))
written=0 nlarge=0 nmedium=0 nsmall=0
put_resource() { # MIN MAX: a resource file of a random size, at resources/<id[0:3]>/<id[3:6]>/<id[6:]>
	local d
	rnd "$1" "$2"
	uuid
	d=$storage/resources/${ID:0:3}/${ID:3:3}
	mkdir -p "$d"
	head -c "$REPLY" /dev/urandom >"$d/${ID:6}"
	written=$((written + REPLY))
}
while ((written < budget * 45 / 100)); do put_resource $((10 << 20)) $((40 << 20)); nlarge=$((nlarge + 1)); done
while ((written < budget * 90 / 100)); do put_resource $((256 << 10)) $((4 << 20)); nmedium=$((nmedium + 1)); done
while ((written < budget)); do put_resource 1024 $((64 << 10)); nsmall=$((nsmall + 1)); done
mkdir -p "$storage/storage/uploads/group" "$storage/storage/uploads/user"
for i in $(seq 1 30); do rnd 2048 40960; head -c "$REPLY" /dev/urandom >"$storage/storage/uploads/group/2024-0$((i % 9 + 1))-1$((i % 10))-logo-$i.png"; done
for i in $(seq 1 20); do rnd 2048 40960; head -c "$REPLY" /dev/urandom >"$storage/storage/uploads/user/avatar-$i.jpg"; done
storage_bytes=$(du -sb "$storage" | cut -f1)
storage_files=$(find "$storage" -type f | wc -l)
log "storage: $storage_files files ($nlarge of 10-40 MiB, $nmedium of 0.25-4 MiB, $nsmall of 1-64 KiB, 50 uploads), $storage_bytes bytes"

# ---------------------------------------------------------------- build
bin=$work/snapshot-bench
(cd "$repo" && "$GO" build -o "$bin" ./bench/snapshot) || die "go build ./bench/snapshot failed"

# ---------------------------------------------------------------- the contenders
can_drop=0
if [[ $DROP_CACHES == 1 ]] && { sync && echo 3 >/proc/sys/vm/drop_caches; } 2>/dev/null; then
	can_drop=1
fi
cache_mode=$([[ $can_drop == 1 ]] && echo "cold (page cache dropped before each contender)" || echo "warm (page cache not dropped)")
log "cache: $cache_mode"

dumpargs=(-Fc -h 127.0.0.1 -p "$PORT" -U postgres)
by_hand_seq() { # OUTDIR [ROUND]
	"$PGDUMP" "${dumpargs[@]}" ckan >"$1/ckan.dump"
	"$PGDUMP" "${dumpargs[@]}" datastore >"$1/datastore.dump"
	tar -cf "$1/storage.tar" -C "$storage" .
}
by_hand_par() { # OUTDIR [ROUND]
	local a b c
	"$PGDUMP" "${dumpargs[@]}" ckan >"$1/ckan.dump" & a=$!
	"$PGDUMP" "${dumpargs[@]}" datastore >"$1/datastore.dump" & b=$!
	tar -cf "$1/storage.tar" -C "$storage" . & c=$!
	wait $a && wait $b && wait $c
}
url() { echo "postgres://postgres@127.0.0.1:$PORT/$1?sslmode=disable"; }
snap() { # NAME ROUND OUTDIR [FLAGS...]: the Go program, its JSON line and progress lines in raw/
	local name=$1 r=$2 dir=$3
	shift 3
	"$bin" -dir "$dir" -pg-dump "$PGDUMP" -v "$@" >"$raw/$name-$r.json" 2>"$raw/$name-$r.log" ||
		{ cat "$raw/$name-$r.log" >&2; return 1; }
}
ckanops() { snap ckanops "$2" "$1" -ckan-db "$(url ckan)" -datastore-db "$(url datastore)" -storage "$storage"; }
# the parts alone (PARTS=1)
tar_by_hand() { tar -cf "$1/storage.tar" -C "$storage" .; }
tar_ckanops() { snap tar-ckanops "$2" "$1" -storage "$storage"; }
dumps_by_hand() {
	local a b
	"$PGDUMP" "${dumpargs[@]}" ckan >"$1/ckan.dump" & a=$!
	"$PGDUMP" "${dumpargs[@]}" datastore >"$1/datastore.dump" & b=$!
	wait $a && wait $b
}
dumps_ckanops() { snap dumps-ckanops "$2" "$1" -ckan-db "$(url ckan)" -datastore-db "$(url datastore)"; }

# busy: how busy (%) other work keeps the CPUs, over 3 s (iowait counts as idle)
busy() {
	local a b
	a=$(head -1 /proc/stat)
	sleep 3
	b=$(head -1 /proc/stat)
	awk -v a="$a" -v b="$b" 'BEGIN{n = split(a, x); split(b, y); t = 0; for (i = 2; i <= n; i++) t += y[i] - x[i]
		idle = (y[5] - x[5]) + (y[6] - x[6]); printf "%.0f", (t > 0 ? 100 * (t - idle) / t : 0)}'
}
prepare() {
	local waited=0
	rm -rf "$out"
	mkdir -p "$out"
	sync
	BUSY=$(busy)
	while ((BUSY >= MAX_BUSY && waited < BUSY_WAIT)); do
		log "other work keeps the CPUs ${BUSY}% busy: waiting"
		sleep 5
		waited=$((waited + 8))
		BUSY=$(busy)
	done
	if ((can_drop)); then echo 3 >/proc/sys/vm/drop_caches; fi
	sleep 1
}
now() { date +%s.%N; }
# run CONTENDER ROUND: times it and the sync after it; appends to times.tsv.
# CPU is the user+sys time of the command's processes (bash's time keyword:
# pg_dump, tar, or the Go program and its pg_dumps), not the server's.
run() {
	local c=$1 r=$2 t0 t1 t2 cpu fn TIMEFORMAT='%3U %3S'
	fn=${c//-/_}
	prepare
	t0=$(now)
	{ time "$fn" "$out" "$r" 2>>"$raw/stderr-$c-$r.log"; } 2>"$raw/cpu"
	t1=$(now)
	sync
	t2=$(now)
	cpu=$(awk '{printf "%.2f", $1 + $2}' "$raw/cpu")
	local sizes verdict=-
	if [[ $c == *ckanops ]]; then
		verdict=$(sed -n 's/.*"verdict":"\([a-z]*\)".*/\1/p' "$raw/$c-$r.json")
		[[ $verdict == consistent ]] || log "warning: round $r: $c's verdict is '$verdict': $(cat "$raw/$c-$r.json")"
	fi
	sizes=$(find "$out" -type f \( -name '*.dump' -o -name '*.tar' \) | sort | xargs stat -c '%n=%s' | sed 's|.*/||' | tr '\n' ' ')
	awk -v c="$c" -v r="$r" -v t0="$t0" -v t1="$t1" -v t2="$t2" -v cpu="$cpu" -v v="$verdict" -v s="$sizes" -v l="$(loadavg)" -v b="$BUSY" \
		'BEGIN{printf "%s\t%d\t%.3f\t%.3f\t%s\t%s\t%s%%\t%s\t%s\n", c, r, t1 - t0, t2 - t1, cpu, v, b, l, s}' >>"$raw/times.tsv"
	log "round $r $c: $(awk -v a="$t0" -v b="$t1" -v d="$t2" 'BEGIN{printf "%.2f s (sync after: %.2f s)", b - a, d - b}'), CPU $cpu s"
}

contenders=(by-hand-seq by-hand-par ckanops)
if [[ $PARTS == 1 ]]; then contenders+=(tar-by-hand tar-ckanops dumps-by-hand dumps-ckanops); fi
n=${#contenders[@]}
log "$ROUNDS rounds, load $(loadavg)"
for ((r = 1; r <= ROUNDS; r++)); do
	for ((i = 0; i < n; i++)); do
		run "${contenders[$(((r - 1 + i) % n))]}" "$r"
	done
done
load_end=$(loadavg)
if [[ $KEEP == 1 ]]; then cp "$pgwork/postgres.log" "$raw/"; fi

# ---------------------------------------------------------------- summary
median() { sort -g | awk '{a[NR] = $1} END {if (NR % 2) printf "%.2f", a[(NR + 1) / 2]; else printf "%.2f", (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
col() { awk -F'\t' -v c="$1" -v f="$2" '$1 == c {print $f}' "$raw/times.tsv"; }
colsum() { awk -F'\t' -v c="$1" '$1 == c {printf "%.3f\n", $3 + $4}' "$raw/times.tsv"; }
declare -A med medsync medcpu
for c in "${contenders[@]}"; do
	med[$c]=$(col "$c" 3 | median)
	medsync[$c]=$(colsum "$c" | median)
	medcpu[$c]=$(col "$c" 5 | median)
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.3f", a / b}'; }
r_seq=$(ratio "${med[ckanops]}" "${med[by-hand-seq]}")
r_par=$(ratio "${med[ckanops]}" "${med[by-hand-par]}")
r_seq_sync=$(ratio "${med[ckanops]}" "${medsync[by-hand-seq]}")
r_par_sync=$(ratio "${med[ckanops]}" "${medsync[by-hand-par]}")
# Issue 21's target: at most 1.0x the by-hand commands run in parallel.
met() { awk -v r="$1" 'BEGIN{print (r <= 1.0 ? "met" : "missed")}'; }

cat <<EOF
== snapshot benchmark: ckanops vs pg_dump -Fc + tar by hand
date:     $(date -u +%Y-%m-%dT%H:%M:%SZ)
commit:   $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
machine:  $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//'), $(awk '/MemTotal/ {printf "%.0f GiB RAM", $2 / 1048576}' /proc/meminfo), kernel $(uname -r)
tools:    $("$PGDUMP" --version), $(tar --version | head -1), $("$GO" version | awk '{print $3}')
load:     start $load_start, end $load_end
cache:    $cache_mode
ckan db:  $ckan_db_size bytes (pgbench -s $SCALE); datastore db: $ds_db_size bytes (5,000 rows)
storage:  $storage_bytes bytes in $storage_files files ($nlarge of 10-40 MiB, $nmedium of 0.25-4 MiB, $nsmall of 1-64 KiB, 50 uploads)

per run (s): contender round wall sync-after cpu(user+sys of the command and its children) verdict busy-before load-after sizes
$(sort -t$'\t' -k2,2n -k1,1 "$raw/times.tsv" | sed 's/^/  /')

medians (s):             wall    wall+sync-after   cpu
  by-hand-seq            ${med[by-hand-seq]}    ${medsync[by-hand-seq]}             ${medcpu[by-hand-seq]}
  by-hand-par            ${med[by-hand-par]}    ${medsync[by-hand-par]}             ${medcpu[by-hand-par]}
  ckanops                ${med[ckanops]}    ${medsync[ckanops]}             ${medcpu[ckanops]}

ratio ckanops / by-hand-seq:            $r_seq  (target <= 1.0: $(met "$r_seq"))
ratio ckanops / by-hand-par:            $r_par  (target <= 1.0: $(met "$r_par"))
ratio ckanops / (by-hand-seq + sync):   $r_seq_sync  ($(met "$r_seq_sync"))
ratio ckanops / (by-hand-par + sync):   $r_par_sync  ($(met "$r_par_sync"))
EOF
if [[ $PARTS == 1 ]]; then
	cat <<EOF

the parts alone, medians (s):  wall    wall+sync-after   cpu
  tar-by-hand            ${med[tar-by-hand]}    ${medsync[tar-by-hand]}             ${medcpu[tar-by-hand]}
  tar-ckanops            ${med[tar-ckanops]}    ${medsync[tar-ckanops]}             ${medcpu[tar-ckanops]}
  dumps-by-hand          ${med[dumps-by-hand]}    ${medsync[dumps-by-hand]}             ${medcpu[dumps-by-hand]}
  dumps-ckanops          ${med[dumps-ckanops]}    ${medsync[dumps-ckanops]}             ${medcpu[dumps-ckanops]}
ratio tar-ckanops / tar-by-hand:        $(ratio "${med[tar-ckanops]}" "${med[tar-by-hand]}")   / (tar-by-hand + sync): $(ratio "${med[tar-ckanops]}" "${medsync[tar-by-hand]}")
ratio dumps-ckanops / dumps-by-hand:    $(ratio "${med[dumps-ckanops]}" "${med[dumps-by-hand]}")   / (dumps-by-hand + sync): $(ratio "${med[dumps-ckanops]}" "${medsync[dumps-by-hand]}")
EOF
fi
echo
echo "ckanops' phases (s from its start, from its progress lines): before = counters + storage walk done;"
echo "tar = archive written and fsynced; dumps = last pg_dump written and fsynced; settle = statistics wait done; kept"
for ((r = 1; r <= ROUNDS; r++)); do
	awk -v r="$r" '{t = $1 + 0} / storage .*files/ {b = t} /archive of storage: done/ {a = t} /pg_dump [a-z_]*: done/ {d = t}
		/verdict:/ {v = t} /kept/ {k = t}
		END {printf "  round %d: before %.2f  tar %.2f  dumps %.2f  settle %.2f  kept %.2f\n", r, b, a, d, v, k}' "$raw/ckanops-$r.log"
done
if [[ $KEEP == 1 ]]; then
	echo
	echo "ckanops' progress lines, last round:"
	sed 's/^/  /' "$raw/ckanops-$ROUNDS.log"
fi
