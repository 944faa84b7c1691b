#!/bin/bash
# CPU time per forward pass (user + sys, one thread) of the given models at batch 1 and 8, by
# difference of two `vitshrink bench` runs (ITERS_HI - ITERS_LO passes), so model loading and
# warm-up cancel. Unlike wall-clock latency this stays meaningful on a machine shared with other
# jobs (time slicing does not change a process's CPU time much; cache sharing still does).
#   bash bench/prune_cpu_time.sh MODEL...
set -euo pipefail
LO=${ITERS_LO:-3} HI=${ITERS_HI:-13}
cpu() { /usr/bin/time -f "%U %S" build/vitshrink bench "$1" --batch "$2" --threads 1 --iters "$3" --seconds 0 2>&1 >/dev/null | tail -1 | awk '{print $1 + $2}'; }
for m in "$@"; do
  for b in 1 8; do
    lo=$(cpu "$m" $b $LO); hi=$(cpu "$m" $b $HI)
    echo "$m batch $b: $(echo "($hi - $lo) * 1000 / ($HI - $LO)" | bc -l | xargs printf '%.1f') ms CPU per forward (1 thread)"
  done
done
