#!/usr/bin/env bash
# The cohort trainer's checks on a GPU, as one command of about 10 minutes: the CUDA tests,
# member-epochs per second of cohorts against fit, the default 50-trial study and the LR grid
# with 3 seeds trained in cohorts. Each step has its own time limit, so a slow step leaves the
# others their time; each step's log and JSON go to OUT.
#
#   bash bench/gpu_check.sh [OUT]    # OUT: default $OUT, else bench/results/gpu
#
# Environment: PYTHON (default python3), DEVICE (default cuda; cpu runs the same steps here,
# to try the script), LIMIT (seconds for every step instead of each step's own).
# Optuna and its database packages must be importable: on a machine without them, install
# their wheels first (optuna, sqlalchemy, alembic, colorlog, mako, greenlet).
set -u
out=${1:-${OUT:-bench/results/gpu}}
py=${PYTHON:-python3}
device=${DEVICE:-cuda}
mkdir -p "$out"
export PYTHONUNBUFFERED=1

step() {  # step NAME SECONDS COMMAND...: run COMMAND into OUT/NAME.log, print its end
    local name=$1 limit=${LIMIT:-$2} start=$SECONDS rc
    shift 2
    echo "== $name (at most ${limit} s): $*"
    timeout "$limit" "$@" >"$out/$name.log" 2>&1
    rc=$?
    echo "   exit $rc after $((SECONDS - start)) s$([ "$rc" = 124 ] && echo ', stopped at its limit')"
    tail -n 12 "$out/$name.log"
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true; } \
    >"$out/gpu.txt" 2>&1
cat "$out/gpu.txt"
"$py" -c 'import torch, optuna; print("torch", torch.__version__, "optuna", optuna.__version__)'

step tests 150 "$py" -m pytest -q -p no:cacheprovider -n 0 -rs tests/test_cohort.py \
    tests/test_train.py -k cuda
step cohort_speed 150 "$py" -m bench.cohort_speed --device "$device" --ks 1,8,32,64,128 \
    --repeats 3 --json "$out/cohort_speed.json"
step default_study 150 "$py" -m bench.study_time --workers 1 --cohorts 16,50 --trials 50 \
    --json "$out/default_study.json" -- --device "$device"
step grid 200 "$py" -m bench.study_time --workers 1 --cohorts 84 --trials 0 \
    --json "$out/grid.json" -- --device "$device" --space lr-grid --repeats 3
