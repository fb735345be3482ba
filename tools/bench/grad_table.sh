#!/bin/sh
# The gradient-step table of RESULTS.md: `bench --backward` case by case
# (each under a time limit, so one slow case does not stop the rest), as
# markdown rows: the batch step, the recording, the backward, their sum
# and its ratio to the step (the target: at most 3x), and where the
# backward ran.
#   tools/bench/grad_table.sh ENGINE [CASES] [LIMIT_S] [extra bench args]
# e.g. on the GPU machine (after gpu_run.sh has built ENGINE):
#   tools/bench/grad_table.sh /tmp/moelat-build/tools/moelat-engine
set -u
engine=$1
cases=${2:-debug:8x8x8,debug:15x15x15,debug:30x30x30,experiment:16x16x16,experiment:24x24x24,experiment:40x40x40,optimized:100x100x100}
limit=${3:-300}
shift $(($# < 3 ? $# : 3))
device=""
echo "| case | batch step ms | record ms | backward ms | grad ms | grad / step |"
echo "|---|---|---|---|---|---|"
for c in $(echo "$cases" | tr ',' ' '); do
    row=$(timeout "$limit" "$engine" bench --backward --percell-cells 0 --steps 10 --cases "$c" --csv "$@" 2>/dev/null |
        tail -n +2)
    if [ -z "$row" ]; then
        echo "| ${c%%:*} ${c#*:} | (no result within ${limit} s) | | | | |"
        continue
    fi
    # device,preset,dims,...,batch_ms (7),...,grad_ms (20),record (21),backward (22),ratio (23)
    echo "$row" | awk -F, '{
        printf "| %s %s | %.3f | %.2f | %.1f | %.1f | %.0fx |\n", $2, $3, $7, $21, $22, $20, $23 }'
    device=$(echo "$row" | cut -d'"' -f2)
done
echo
echo "(device: $device; bench --backward --percell-cells 0 --steps 10, median of 3 gradient steps)"
