#!/usr/bin/env bash
# One prepared GPU session of rad-env. On the GPU machine, from the repository root, with
# ../shared/gpu/prepare.sh's .gpu/ carried along:
#
#   PLAN=finetune (default; ~6 min on an H200, fits one device call):
#     source .gpu/remote.sh && OUT=<folder> bash tools/gpu_session.sh [NAME="EXTRA TRAIN FLAGS" ...]
#   the speed benchmarks, half of data/mix recorded again, and fine-tunes of the embedded default with
#   stage 9's recipe side by side on the one GPU, one per argument (default: control=""), e.g.
#     control="" adv10="--adversarial-weight 0.1 --adversarial-min-sigma 5 --critic-warmup 50"
#   (the 2026-12-04 session: docs/speed.md "Speed on a GPU" and docs/experiments.md "Adversarial training").
#
#   PLAN=small (issue 8 item 4; ~11 min of work, more than one device call allows: start it detached,
#   then collect the results with a second call, as ../shared/gpu/README.md describes):
#     source .gpu/remote.sh && (PLAN=small OUT=/tmp/rad-small setsid nohup bash tools/gpu_session.sh \
#       >/tmp/rad-small.log 2>&1 </dev/null &) ; sleep 540; tail -n 5 /tmp/rad-small/speed.txt
#     while [ ! -f /tmp/rad-gpu-session/DONE ]; do sleep 5; done; cp /tmp/rad-small/* "$OUT"/
#   a `small` RAD (~20M parameters) trained from scratch with every feature of the embedded default (motion
#   prior per pair of actions, canvas, clean-frame preconditioning, TBPTT), teacher-forced (A_LIMIT s), then
#   fine-tuned on its own rollouts (B_LIMIT s); then the held-out evaluation of it and of the embedded default
#   on the same machine, on seed-1 episodes recorded there (identical to data/mm9_test).
#
# Into $OUT: speed.txt (every table and the logs' ends), logs.tar.gz (JSON, metrics, curves, evaluations),
# model_<NAME>.pt per run in float16 (a float32 model.pt is over what a device call brings back; the small
# model is split into model_small.pt.part-aa, -ab, ... of 15 MB: `cat model_small.pt.part-* > model_small.pt`;
# with PLAN=small the evaluations, rollout_grid.png included, are in logs.tar.gz). $WORK/DONE when finished.
# SCALE=dry runs every stage at toy sizes on the CPU (a few minutes) to check the script itself.
set -u
export PYTHONUNBUFFERED=1
PY=${PY:-python3}
PLAN=${PLAN:-finetune}
OUT=${OUT:?set OUT to the folder for the results}
W=${WORK:-/tmp/rad-gpu-session}
case "$PLAN" in finetune|small) ;; *) echo "PLAN must be finetune or small, got '$PLAN'" >&2; exit 2;; esac
rm -rf "$W"; mkdir -p "$W/logs" "$OUT"
[ $# -gt 0 ] || set -- control=""
T0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - T0 )) s] $*" | tee -a "$OUT/speed.txt"; }
if [ "${SCALE:-full}" = dry ]; then
  DEV=cpu; STEPS=40; FT_STEPS=4; TIME_LIMIT=60; THREADS="--threads 1"; SEQ=16
  SPEED="--train-steps 1 --batch-size 1 --dream-steps 2 --envs 1,2 --real-steps 5"
  A_STEPS=3; A_LIMIT=60; A_BATCH=2; B_STEPS=2; B_LIMIT=60; B_BATCH=2; HORIZON=6; EVAL_EPISODES=1
  episodes() { echo 1; }; workers() { echo 1; }
else
  DEV=cuda; STEPS=500; FT_STEPS=300; TIME_LIMIT=230; THREADS=""; SEQ=64
  SPEED="--train-steps 20 --dream-steps 20 --envs 1,16,64,256 --real-steps 100"
  # small, batch 64 x 16 frames: ~3 steps/s expected teacher-forced (docs/speed.md "Speed on a GPU"); the time
  # limits stop each stage cleanly (checkpoints written) if it runs slower than planned
  A_STEPS=${A_STEPS:-900}; A_LIMIT=${A_LIMIT:-300}; A_BATCH=64
  B_STEPS=${B_STEPS:-200}; B_LIMIT=${B_LIMIT:-150}; B_BATCH=32; HORIZON=300; EVAL_EPISODES=12
  episodes() { echo "$1"; }; workers() { echo "$1"; }
fi
stamp "start ($PLAN): $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo no GPU)"

# half of data/mix (the same seeds as README "The embedded default": the first episodes of each part),
# in the background; PLAN=small also records the held-out test episodes (seed 1, as data/mm9_test)
R="$PY collect/record.py --env memory-maze-9x9 --steps $STEPS --no-progress"
$R --policy explore --noise 0.25 --episodes "$(episodes 24)" --seed 0 --workers "$(workers 4)" \
  --out "$W/mix/explore" > "$W/logs/rec_explore.log" 2>&1 &
$R --policy explore --noise 0.25 --look-around 0.03 --episodes "$(episodes 12)" --seed 2 --workers "$(workers 3)" \
  --out "$W/mix/look" > "$W/logs/rec_look.log" 2>&1 &
$R --policy retrace --explore-steps $((STEPS / 2)) --episodes "$(episodes 12)" --seed 7 --workers "$(workers 3)" \
  --out "$W/mix/retrace" > "$W/logs/rec_retrace.log" 2>&1 &
$R --policy target --episodes "$(episodes 20)" --seed 8 --workers "$(workers 3)" \
  --out "$W/mix/target" > "$W/logs/rec_target.log" 2>&1 &
if [ "$PLAN" = small ]; then
  $R --policy explore --noise 0.25 --episodes "$(episodes 12)" --seed 1 --workers "$(workers 3)" \
    --out "$W/test" > "$W/logs/rec_test.log" 2>&1 &
fi

# float16 copy of a run's model.pt (export_checkpoint: EMA weights, no build paths)
export_fp16() {
  $PY -c "import sys; from pathlib import Path
from rad_env.checkpoint import load_checkpoint
from tools.build_default_assets import export_checkpoint
src = Path(sys.argv[1]); ckpt = load_checkpoint(src)
export_checkpoint(ckpt, src, Path(sys.argv[2]), {}, sorted(ckpt['data']['seeds']))" "$1" "$2" >> "$OUT/speed.txt" 2>&1
}
keep_logs() {  # a run's logs into logs.tar.gz
  for f in metrics.csv summary.json curves.png; do [ -f "$W/runs/$1/$f" ] && cp "$W/runs/$1/$f" "$W/logs/${1}_$f"; done
}

if [ "$PLAN" = finetune ]; then
  # speed: training throughput by memory type (small 16 x 64, tiny 8 x 16), the batched dream env
  S="$PY -m benchmarks.speed --device $DEV $SPEED"
  {
    $S --parts train --train-memories lstm,none,linear --train-preset small --train-seq-len $SEQ \
      --out "$W/logs/speed_small.json"
    $S --parts train --train-memories lstm,none,linear --out "$W/logs/speed_tiny.json"
    $S --parts dream --checkpoint rad_env/assets/memory_maze_tiny.pt --out "$W/logs/speed_dream.json"
  } 2>&1 | grep -v -i "warn\|gym\|migration" | tee -a "$OUT/speed.txt"
  stamp "speed done; waiting for the recordings"
fi
wait
for f in "$W"/logs/rec_*.log; do echo "== $f"; tail -n 2 "$f"; done >> "$OUT/speed.txt"
stamp "recorded $(du -sh "$W/mix" | cut -f1)"

if [ "$PLAN" = finetune ]; then
  FT="$PY -m rad_env.train --data $W/mix --init rad_env/assets/memory_maze_tiny.pt --tbptt --rollout-prob 0.5
      --steps $FT_STEPS --lr 3e-4 --warmup 20 --ckpt-every 50 --no-tensorboard --device $DEV
      --time-limit $TIME_LIMIT $THREADS"
  names=()
  for run in "$@"; do
    name=${run%%=*}; flags=${run#*=}; names+=("$name")
    # shellcheck disable=SC2086  # the flags are words
    $FT $flags --out "$W/runs/$name" > "$W/logs/ft_$name.log" 2>&1 &
  done
  stamp "fine-tunes started: ${names[*]}"
  wait
  stamp "fine-tunes done"
  for name in "${names[@]}"; do
    tail -c 600 "$W/logs/ft_$name.log" >> "$OUT/speed.txt"; echo >> "$OUT/speed.txt"
    export_fp16 "$W/runs/$name/model.pt" "$OUT/model_$name.pt" || echo "no model for $name" >> "$OUT/speed.txt"
    keep_logs "$name"
  done
else
  # the embedded default's features, from scratch (README "The embedded default", stages 3-10)
  FEATURES=(motion_pairs=true prior_input=true canvas_width=448 hud_border=2 "pan_actions=[0,2,3]" sigma_skip=0.1
            sampling_steps=2 "sampling_sigmas=[80,0.8]" reward_event_weight=10)
  T="$PY -m rad_env.train --data $W/mix --tbptt --ckpt-every 100 --no-tensorboard --device $DEV $THREADS"
  # shellcheck disable=SC2086
  $T --preset small --model "${FEATURES[@]}" --batch-size $A_BATCH --steps $A_STEPS --time-limit $A_LIMIT \
    --out "$W/runs/small_a" > "$W/logs/train_small_a.log" 2>&1
  tail -c 600 "$W/logs/train_small_a.log" >> "$OUT/speed.txt"; echo >> "$OUT/speed.txt"
  stamp "stage A (teacher-forced) done"
  # shellcheck disable=SC2086
  $T --init "$W/runs/small_a/model.pt" --rollout-prob 0.5 --lr 2e-4 --warmup 10 --batch-size $B_BATCH \
    --steps $B_STEPS --time-limit $B_LIMIT --out "$W/runs/small" > "$W/logs/train_small.log" 2>&1
  tail -c 600 "$W/logs/train_small.log" >> "$OUT/speed.txt"; echo >> "$OUT/speed.txt"
  stamp "stage B (own rollouts) done"
  keep_logs small_a; keep_logs small
  EV="$PY -m rad_env.evaluate --data $W/test --episodes $EVAL_EPISODES --horizon $HORIZON --device $DEV
      --no-denoiser --no-retrieval --no-rewards --no-probes"
  for run in small:$W/runs/small/model.pt default:rad_env/assets/memory_maze_tiny.pt; do
    name=${run%%:*}
    # shellcheck disable=SC2086
    $EV --checkpoint "${run#*:}" --out "$W/logs/eval_$name" > "$W/logs/eval_$name.log" 2>&1
    sed -n '/^rollout vs baselines/,/^rewards in/p' "$W/logs/eval_$name.log" | head -n 40 >> "$OUT/speed.txt"
  done
  stamp "evaluated"
  export_fp16 "$W/runs/small/model.pt" "$W/model_small.pt" && split -b 15M "$W/model_small.pt" "$OUT/model_small.pt.part-"
fi
tar -czf "$OUT/logs.tar.gz" -C "$W" logs
stamp "all done"
touch "$W/DONE"
