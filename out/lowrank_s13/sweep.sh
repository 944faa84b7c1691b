#!/usr/bin/env bash
# circuits probe sweep: `bash out/lowrank_s13/sweep.sh ARGS...` (each ARG "QK OV [FC]")
cd "$(dirname "$0")/../.."
for a in "$@"; do
  LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu/openblas-openmp OPENBLAS_CORETYPE=SkylakeX OMP_NUM_THREADS=2 /usr/bin/python3 out/lowrank_s13/circuits.py $a 2>&1 | tail -1 | tee -a out/lowrank_s13/circuits.log
done
