#!/usr/bin/env bash
# The GPU benchmark suite, each step on its own time budget; a failing step is logged and the
# next one runs. Results land in $OUT (default ./gpu_out): results.json (all steps, with GPU
# utilisation from nvidia-smi samples), RESULTS_gpu.md (the tables), suite.log, smi.csv.
#
#   OUT=/some/dir bash benchmarks/gpu_suite.sh           # the full suite (<= 760 s on one H100)
#   OUT=/some/dir STEPS="cache run_maps" bash benchmarks/gpu_suite.sh   # only some steps
#   OUT=/tmp/x bash benchmarks/gpu_suite.sh --tiny       # ViT-B-32, a few samples: checks the plumbing (CPU ok)
#
# Every script takes [--config FILE] key=value (defaults: the YAML beside it).
# Bring the results home with: python benchmarks/write_results.py "bench.inputs=[$OUT/results.json]"
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/gpu_out}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"   # this checkout's dcsm, also for data_prep subprocesses
WORK="$(mktemp -d "${TMPDIR:-/tmp}/dcsm-gpu-suite.XXXXXX")"
LOG="$OUT/suite.log"
SMI="$OUT/smi.csv"
: > "$LOG"
TINY=0
[ "${1:-}" = "--tiny" ] && TINY=1
WORKERS="${WORKERS:-12}"

# STEPS: which steps run (default all, in this order); e.g. STEPS="cache run run_maps" for a second call
STEPS=" ${STEPS:-score train cache run run_maps} "
want() { [[ "$STEPS" == *" $1 "* ]]; }
if [ "$TINY" = 1 ]; then
  CACHE_ARGS=(encoder.model=ViT-B-32 bench.samples=96 bench.batch_size=16 "bench.collate_batch_sizes=[16,32]"
              bench.collate_repeats=1 bench.timed_batches=1 bench.live_batch_size=2); B_CACHE=900
  SCORE_MODELS=(ViT-B-32); SCORE_ARGS=(bench.batch_size=2 bench.repeats=1 bench.warmup=0 "bench.precisions=[fp32]")
  TRAIN_ARGS=(encoder.model=ViT-B-32 bench.samples=96 bench.samples_per_shard=16 "bench.batch_sizes=[16]"
              bench.live_batches=1 bench.timed_batches=2 bench.warmup=1 bench.compile_batch_size=null data.num_workers=2)
  RUN_ARGS=(encoder.model=ViT-B-32 data.train_size=64 data.val_size=16 data.shifted_size=16 data.test_size=16
            trainer.max_epochs=2 data.num_workers=2)
  B_SCORE=(900); B_TRAIN=900; B_RUN=900
else
  # issue #24: host batching, every cache kind's training pairs/s, compiled head; bytes per sample (B-16, L-14)
  CACHE_ARGS=(encoder.model=ViT-B-16 bench.samples=3072 bench.batch_size=1024 "bench.collate_batch_sizes=[64,256,1024]"
              bench.timed_batches=20 bench.warmup=3 bench.live_batch_size=64 bench.compile=true); B_CACHE=90
  SCORE_MODELS=(ViT-B-16 ViT-L-14); SCORE_ARGS=()
  TRAIN_ARGS=(encoder.model=ViT-B-16 bench.samples=2048 bench.samples_per_shard=64 "bench.batch_sizes=[64,256,1024]"
              bench.live_batches=6 bench.compile_batch_size=1024 data.num_workers="$WORKERS")
  # configs/default.yaml as is (ViT-B-16, 20k scenes, batch 64, 32-true, 30 epochs) on random init;
  # max_time stops it cleanly if the budget runs short (the JSON records the epochs run)
  RUN_ARGS=(encoder.model=ViT-B-16 data.num_workers="$WORKERS" trainer.max_epochs="${EPOCHS:-10}")
  # two calls of <= 600 s each (benchmarks/GPU_RUN.md): STEPS="score train cache" (<= 360 s), then
  # STEPS="run run_maps" (<= 400 s); each run: ~80 s of start-up + caching 21k scenes, then the fit, stopped
  # cleanly by max_time (~4.5 s per epoch measured on main's code)
  B_SCORE=(70 90); B_TRAIN=110; B_RUN=200
fi
if [ "$TINY" = 1 ] && ! command -v nvidia-smi >/dev/null; then ACCEL=auto; else ACCEL=gpu; fi

step() {  # step NAME BUDGET_S CMD...: run with a hard time limit, log rc and seconds, never abort the suite
  local name="$1" budget="$2"; shift 2
  local t0; t0=$(date +%s)
  echo "=== $name: start $(date -u +%T), budget ${budget}s" | tee -a "$LOG"
  timeout -k 15 "$budget" "$@" >> "$LOG" 2>&1
  local rc=$?
  echo "=== $name: rc=$rc after $(( $(date +%s) - t0 ))s" | tee -a "$LOG"
}

SMI_PID=""
if command -v nvidia-smi >/dev/null && nvidia-smi -L >> "$LOG" 2>&1; then
  nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader,nounits -lms 250 > "$SMI" 2>/dev/null &
  SMI_PID=$!
else
  echo "no nvidia-smi: no GPU utilisation samples" | tee -a "$LOG"
fi
"$PY" -c "import torch, open_clip, lightning, webdataset, omegaconf; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'open_clip', open_clip.__version__)" >> "$LOG" 2>&1

# (1) scoring throughput: plain CLIP vs DCSM end to end vs head alone, fp32 + bf16, batch 64 x 4
for i in "${!SCORE_MODELS[@]}"; do
  want score || break
  m="${SCORE_MODELS[$i]}"
  step "score_throughput $m" "${B_SCORE[$i]}" "$PY" benchmarks/score_throughput.py "bench.models=[$m]" \
    bench.output="$WORK/score_$i.json" bench.results_md=null "${SCORE_ARGS[@]}"
done

# (2) training throughput, bf16-mixed: live vs cached (feature shards) vs resident; compiled head at batch 1024
want train && step "train_throughput" "$B_TRAIN" "$PY" benchmarks/train_throughput.py bench.output="$WORK/train.json" \
  bench.results_md=null bench.workdir="$WORK/train" "${TRAIN_ARGS[@]}"
rm -rf "$WORK/train"

# (3) issue #24: host batching before/after, training pairs/s of every cache kind (embedding / map shards,
#     in memory, resident, live, compiled head), cache bytes per sample for ViT-B-16 / ViT-L-14
want cache && step "cache_speed" "$B_CACHE" "$PY" benchmarks/cache_speed.py bench.output="$WORK/cache_speed.json" \
  bench.results_md=null "${CACHE_ARGS[@]}"

# (4) a 20k-scene training run with configs/default.yaml settings on random-init weights
want run && step "train_run" "$B_RUN" "$PY" benchmarks/train_run.py bench.output="$WORK/run.json" \
  bench.max_time_s=$(( B_RUN - 100 )) encoder.pretrained=null trainer.accelerator="$ACCEL" logger.kind=csv \
  run_dir="$WORK/run" resume=null trainer.enable_progress_bar=false "${RUN_ARGS[@]}"
# (5) the same run from the map cache (data.cache=maps; the cache on the GPU when it fits: data.cache_device=auto)
want run_maps && step "train_run maps" "$B_RUN" "$PY" benchmarks/train_run.py bench.output="$WORK/run_maps.json" \
  bench.max_time_s=$(( B_RUN - 100 )) encoder.pretrained=null trainer.accelerator="$ACCEL" logger.kind=csv \
  run_dir="$WORK/run_maps" resume=null trainer.enable_progress_bar=false data.cache=maps "${RUN_ARGS[@]}"

[ -n "$SMI_PID" ] && kill "$SMI_PID" 2>/dev/null
sleep 1
RESULTS=()
for f in "$WORK"/score_*.json "$WORK/train.json" "$WORK/cache_speed.json" "$WORK/run.json" "$WORK/run_maps.json"; do [ -f "$f" ] && RESULTS+=("$f"); done
echo "=== results: ${RESULTS[*]:-none}" | tee -a "$LOG"
if [ "${#RESULTS[@]}" -gt 0 ]; then
  INPUTS="$(IFS=,; echo "${RESULTS[*]}")"
  "$PY" benchmarks/write_results.py "bench.inputs=[$INPUTS]" bench.smi="$SMI" bench.combined="$OUT/results.json" \
    bench.results_md="$OUT/RESULTS_gpu.md" >> "$LOG" 2>&1 || echo "write_results failed (see above)" | tee -a "$LOG"
fi
[ -d "$WORK/run" ] && find "$WORK/run" -name "metrics.csv" -exec cp {} "$OUT/run_metrics.csv" \; 2>/dev/null
[ -d "$WORK/run_maps" ] && find "$WORK/run_maps" -name "metrics.csv" -exec cp {} "$OUT/run_maps_metrics.csv" \; 2>/dev/null
rm -rf "$WORK"
echo "=== done $(date -u +%T)" | tee -a "$LOG"
