#!/usr/bin/env bash
# The fixed CPU training budget of the closing notes (2-core machine, 128 px, about 75 minutes wall):
# stage 1 then stage 2 of the two-stage model in one process, the one-stage ablation and the
# reconstruction-only U-Net (same generator, no discriminator: --adv 0) in two others, one thread
# each, equal stage-2 steps; then one evaluation of all of them on the test split.
#
#   bash pipelines/cpu_budget.sh [DATA=data/shards] [OUT=runs/cpu_budget]
#   RECIPE=finetune bash pipelines/cpu_budget.sh ...
#
# RECIPE=finetune: the GAN is not trained from scratch but fine-tuned from the reconstruction-only
# run's generator at half its steps (--keep-checkpoints, --init-generator) for the other half, so
# both have seen GAN_STEPS generator steps. The one-stage ablation follows the same recipe with its
# own (map-less) generator: half the steps reconstruction-only at the constant first lr, as the
# reconstruction-only run has them, then the GAN. About 100 minutes; ONE_STAGE=0 skips the
# ablation (about 65).
# Run from the repository root after `make quickstart` (it reuses data/shards).
set -euo pipefail
DATA=${1:-data/shards}
OUT=${2:-runs/cpu_budget}
SEG_STEPS=${SEG_STEPS:-1200}
GAN_STEPS=${GAN_STEPS:-2000}
RECIPE=${RECIPE:-scratch}
COMMON=(--data "$DATA" --preset cpu --resolution 128 --mseg-width 16 --generator-width 16 --discriminator-width 24
        --batch-size 16 --lr 0.001 --lr-milestones 0.6,0.85 --seed 0 --num-workers 1
        --val-max-batches 20 --device cpu --no-progress)
export OMP_NUM_THREADS=1
mkdir -p "$OUT"
HALF=$((GAN_STEPS / 2))
if [ "$RECIPE" = finetune ]; then
  ( unmask train --stage gan --adv 0 "${COMMON[@]}" --out "$OUT/recon_only" --steps "$GAN_STEPS" \
      --checkpoint-every "$HALF" --keep-checkpoints ) > "$OUT/recon_only.log" 2>&1 &
  RECON=$!
  SNAPSHOT=$(printf "%s/recon_only/checkpoints/gan-%06d.pt" "$OUT" "$HALF")
  ( unmask train --stage seg "${COMMON[@]}" --out "$OUT/two_stage" --steps "$SEG_STEPS" \
    && while [ ! -f "$SNAPSHOT" ]; do  # written atomically: there means complete
         kill -0 "$RECON" 2>/dev/null || { echo "recon_only stopped before step $HALF"; exit 1; }
         sleep 20
       done \
    && unmask train --stage gan "${COMMON[@]}" --out "$OUT/two_stage" --steps "$HALF" --init-generator "$SNAPSHOT"
  ) > "$OUT/two_stage.log" 2>&1 &
  EXTRA=()
  if [ "${ONE_STAGE:-1}" = 1 ]; then
    ( unmask train --stage gan --no-map --adv 0 "${COMMON[@]}" --lr-milestones "" --out "$OUT/one_stage_recon" \
        --steps "$HALF" \
      && unmask train --stage gan --no-map "${COMMON[@]}" --out "$OUT/one_stage" --steps "$HALF" \
        --init-generator "$OUT/one_stage_recon" ) > "$OUT/one_stage.log" 2>&1 &
    EXTRA=(--one-stage "$OUT/one_stage")
  fi
else
  ( unmask train --stage seg "${COMMON[@]}" --out "$OUT/two_stage" --steps "$SEG_STEPS" \
    && unmask train --stage gan "${COMMON[@]}" --out "$OUT/two_stage" --steps "$GAN_STEPS" ) > "$OUT/two_stage.log" 2>&1 &
  ( unmask train --stage gan --no-map "${COMMON[@]}" --out "$OUT/one_stage" --steps "$GAN_STEPS" ) > "$OUT/one_stage.log" 2>&1 &
  ( unmask train --stage gan --adv 0 "${COMMON[@]}" --out "$OUT/recon_only" --steps "$GAN_STEPS" ) > "$OUT/recon_only.log" 2>&1 &
  EXTRA=(--one-stage "$OUT/one_stage")
fi
for job in $(jobs -p); do wait "$job"; done  # fails the script if a run failed
unset OMP_NUM_THREADS
unmask evaluate --data "$DATA" --split test --checkpoint "$OUT/two_stage" "${EXTRA[@]}" \
  --recon-only "$OUT/recon_only" -o "$OUT/eval" --max-samples 300 --photos data/real-masked --max-photos 40 \
  --identity --identity-max-samples 100 --no-progress
unmask compare "$OUT/eval" -o "$OUT/eval/table.md"
