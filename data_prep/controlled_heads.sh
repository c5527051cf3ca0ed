#!/usr/bin/env bash
# Issue 27: train and export a DCSM head on every controlled CLIP of the center-bias experiment
# (configs/controlled_head.yaml on each variant's weights), into HEADS/<variant>_s<seed>/head.*,
# where data_prep/controlled.py (controlled.heads_dir) finds them.
#   bash data_prep/controlled_heads.sh [WEIGHTS_DIR] [HEADS_DIR] [RUNS_DIR] [key=value ...]
# Runs that already hold an export are skipped; extra key=value pairs go to train.py.
set -euo pipefail
WEIGHTS=${1:-docs/diagnostics/controlled/weights}
HEADS=${2:-docs/diagnostics/controlled/heads}
RUNS=${3:-runs/controlled_heads}
shift $(( $# < 3 ? $# : 3 ))
for variant in centred meanpool uniform spurious; do
  model=dcsm-tiny-ViT; [ "$variant" = meanpool ] && model=dcsm-tiny-ViT-avg
  for seed in 0 1 2; do
    run=${variant}_s${seed}
    weights=$WEIGHTS/$run/$model.safetensors
    [ -f "$weights" ] || { echo "skip $run: no $weights"; continue; }
    [ -f "$HEADS/$run/head.safetensors" ] && { echo "skip $run: $HEADS/$run/head.safetensors exists"; continue; }
    python train.py --config configs/controlled_head.yaml encoder.model=$model encoder.pretrained=$weights \
      run_dir=$RUNS/$run "$@"
    ckpt=$(python -c "import json,sys; print(json.load(open(sys.argv[1]))['checkpoint'])" "$RUNS/$run/metrics.json")
    mkdir -p "$HEADS/$run"
    python data_prep/export_head.py export_head.checkpoint="$ckpt" export_head.out="$HEADS/$run/head" export_head.overwrite=true
  done
done
