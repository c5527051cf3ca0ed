#!/usr/bin/env bash
# Issue 27: train and export a DCSM head on every controlled CLIP (configs/controlled_head.yaml on
# each run's weights) into $HEADS_DIR/<variant>_s<seed>/head.{safetensors,json} (+ the run's metrics.json), where
# data_prep/controlled.py (controlled.heads_dir) finds them and scores the sweep with them.
#   bash data_prep/controlled_heads.sh [key=value ...]        # key=value pairs go to train.py
# Environment (space-separated lists): VARIANTS (default: centred meanpool uniform spurious),
# SEEDS (0 1 2), WEIGHTS_DIR (docs/diagnostics/controlled/weights), HEADS_DIR
# (docs/diagnostics/controlled/heads), RUNS_DIR (runs/controlled_heads). Runs without weights, and
# runs that already hold a head, are skipped.
set -euo pipefail
WEIGHTS_DIR=${WEIGHTS_DIR:-docs/diagnostics/controlled/weights}
HEADS_DIR=${HEADS_DIR:-docs/diagnostics/controlled/heads}
RUNS_DIR=${RUNS_DIR:-runs/controlled_heads}
for variant in ${VARIANTS:-centred meanpool uniform spurious}; do
  model=dcsm-tiny-ViT; [ "$variant" = meanpool ] && model=dcsm-tiny-ViT-avg
  for seed in ${SEEDS:-0 1 2}; do
    run=${variant}_s${seed}
    weights=$WEIGHTS_DIR/$run/$model.safetensors
    [ -f "$weights" ] || { echo "skip $run: no $weights"; continue; }
    [ -f "$HEADS_DIR/$run/head.safetensors" ] && { echo "skip $run: $HEADS_DIR/$run/head.safetensors exists"; continue; }
    python train.py --config configs/controlled_head.yaml encoder.model=$model encoder.pretrained=$weights \
      run_dir=$RUNS_DIR/$run "$@"
    ckpt=$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['checkpoint'])" "$RUNS_DIR/$run/metrics.json")
    python data_prep/export_head.py export_head.checkpoint="$ckpt" export_head.out="$HEADS_DIR/$run/head" export_head.overwrite=true
    cp "$RUNS_DIR/$run/metrics.json" "$HEADS_DIR/$run/metrics.json"  # the head's test-split scores, shipped beside it
    echo "$run: $HEADS_DIR/$run/head.safetensors"
  done
done
