#!/usr/bin/env bash
# The announce rewrite against the read-only one (issue 19): the gate's
# annotator on the same pages in both modes, as paired Go benchmarks in one
# run, reported as ratios (announce / read-only) with the machine's load.
# Appends a section to bench/RESULTS.md (bench/run.sh rewrites that file
# and calls this script at its end). COUNT and BENCHTIME tune the run.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
out="${OUT:-$repo/bench/RESULTS.md}"
count="${COUNT:-6}"
benchtime="${BENCHTIME:-2000x}"
load_start="$(cut -d' ' -f1-3 /proc/loadavg)"
raw="$(mktemp)"
trap 'rm -f "$raw"' EXIT
(cd "$repo" && go test -run '^$' -bench '^BenchmarkAnnounce$' -benchmem -benchtime="$benchtime" -count="$count" ./gate/annotate/) >"$raw"
load_end="$(cut -d' ' -f1-3 /proc/loadavg)"
{
	echo
	echo "## Annotation: announce / read-only"
	echo
	echo "\`bench/announce.sh\`: \`go test -bench '^BenchmarkAnnounce\$' -benchtime=$benchtime -count=$count ./gate/annotate/\`, $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $(cd "$repo" && git rev-parse --short HEAD), load average at start $load_start, at end $load_end."
	echo "Median ns/op of each pairing, and their ratio (below 1: announcing is cheaper). The announced page keeps its forms (they are marked, not replaced), so more bytes go out of it."
	echo
	echo "| page | encoding | read-only ns/op | announce ns/op | announce / read-only |"
	echo "| --- | --- | --- | --- | --- |"
	awk '
		/^BenchmarkAnnounce\// {
			split($1, p, "/"); sub(/-[0-9]+$/, "", p[4])
			key = p[2] "\t" p[3]; mode = p[4]
			n[key, mode]++; v[key, mode, n[key, mode]] = $3
			if (!(key in seen)) { seen[key] = 1; order[++k] = key }
		}
		function median(key, mode,   i, j, m, a, t) {
			m = n[key, mode]
			for (i = 1; i <= m; i++) a[i] = v[key, mode, i] + 0
			for (i = 1; i <= m; i++) for (j = i + 1; j <= m; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
			return (m % 2) ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
		}
		END {
			for (i = 1; i <= k; i++) {
				split(order[i], kk, "\t")
				ro = median(order[i], "read-only"); an = median(order[i], "announce")
				printf "| %s | %s | %.0f | %.0f | %.2f |\n", kk[1], kk[2], ro, an, an / ro
			}
		}' "$raw"
} >>"$out"
echo "bench/announce.sh: appended to $out"
