#!/usr/bin/env bash
# One prepared GPU session of rad-env: the speed benchmarks, half of data/mix recorded again, and
# fine-tunes of the embedded default with stage 9's recipe, side by side on the one GPU.
#
# On the GPU machine, from the repository root, with ../shared/gpu/prepare.sh's .gpu/ carried along:
#   source .gpu/remote.sh && OUT=<folder> bash tools/gpu_session.sh [NAME="EXTRA TRAIN FLAGS" ...]
# Each argument is one fine-tune run (default: control=""), e.g.
#   control="" adv10="--adversarial-weight 0.1 --adversarial-min-sigma 5 --critic-warmup 50"
# (the 2026-12-04 session: README "Speed on a GPU" and "Adversarial training"; ~6 min on an H200).
# Into $OUT: speed.txt (every table and the logs' ends), logs.tar.gz (JSON, metrics, curves) and
# model_<NAME>.pt per run, float16 (~8.5 MB: a float32 model.pt is over what a device call brings back).
# SCALE=dry runs every stage at toy sizes on the CPU (a few minutes) to check the script itself.
set -u
export PYTHONUNBUFFERED=1
PY=${PY:-python3}
OUT=${OUT:?set OUT to the folder for the results}
W=${WORK:-/tmp/rad-gpu-session}
rm -rf "$W"; mkdir -p "$W/logs" "$OUT"
[ $# -gt 0 ] || set -- control=""
T0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - T0 )) s] $*" | tee -a "$OUT/speed.txt"; }
if [ "${SCALE:-full}" = dry ]; then
  DEV=cpu; STEPS=40; FT_STEPS=4; TIME_LIMIT=60; THREADS="--threads 1"; SEQ=16
  SPEED="--train-steps 1 --batch-size 1 --dream-steps 2 --envs 1,2 --real-steps 5"
  episodes() { echo 1; }; workers() { echo 1; }
else
  DEV=cuda; STEPS=500; FT_STEPS=300; TIME_LIMIT=230; THREADS=""; SEQ=64
  SPEED="--train-steps 20 --dream-steps 20 --envs 1,16,64,256 --real-steps 100"
  episodes() { echo "$1"; }; workers() { echo "$1"; }
fi
stamp "start: $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo no GPU)"

# 1. half of data/mix (the same seeds as README "The embedded default": the first episodes of each part),
#    recorded on 13 workers while the benchmarks run
R="$PY collect/record.py --env memory-maze-9x9 --steps $STEPS --no-progress"
$R --policy explore --noise 0.25 --episodes "$(episodes 24)" --seed 0 --workers "$(workers 4)" \
  --out "$W/mix/explore" > "$W/logs/rec_explore.log" 2>&1 &
$R --policy explore --noise 0.25 --look-around 0.03 --episodes "$(episodes 12)" --seed 2 --workers "$(workers 3)" \
  --out "$W/mix/look" > "$W/logs/rec_look.log" 2>&1 &
$R --policy retrace --explore-steps $((STEPS / 2)) --episodes "$(episodes 12)" --seed 7 --workers "$(workers 3)" \
  --out "$W/mix/retrace" > "$W/logs/rec_retrace.log" 2>&1 &
$R --policy target --episodes "$(episodes 20)" --seed 8 --workers "$(workers 3)" \
  --out "$W/mix/target" > "$W/logs/rec_target.log" 2>&1 &

# 2. speed: training throughput by memory type (small 16 x 64, tiny 8 x 16), the batched dream env
S="$PY -m benchmarks.speed --device $DEV $SPEED"
{
  $S --parts train --train-memories lstm,none,linear --train-preset small --train-seq-len $SEQ \
    --out "$W/logs/speed_small.json"
  $S --parts train --train-memories lstm,none,linear --out "$W/logs/speed_tiny.json"
  $S --parts dream --checkpoint rad_env/assets/memory_maze_tiny.pt --out "$W/logs/speed_dream.json"
} 2>&1 | grep -v -i "warn\|gym\|migration" | tee -a "$OUT/speed.txt"
stamp "speed done; waiting for the recordings"
wait
for f in "$W"/logs/rec_*.log; do echo "== $f"; tail -n 2 "$f"; done >> "$OUT/speed.txt"
stamp "recorded $(du -sh "$W/mix" | cut -f1)"

# 3. the fine-tunes, side by side
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
  $PY -c "import sys; from pathlib import Path
from rad_env.checkpoint import load_checkpoint
from tools.build_default_assets import export_checkpoint
src = Path(sys.argv[1]); ckpt = load_checkpoint(src)
export_checkpoint(ckpt, src, Path(sys.argv[2]), {}, sorted(ckpt['data']['seeds']))" \
    "$W/runs/$name/model.pt" "$OUT/model_$name.pt" >> "$OUT/speed.txt" 2>&1 || echo "no model for $name" >> "$OUT/speed.txt"
  for f in metrics.csv summary.json curves.png; do
    [ -f "$W/runs/$name/$f" ] && cp "$W/runs/$name/$f" "$W/logs/${name}_$f"
  done
done
tar -czf "$OUT/logs.tar.gz" -C "$W" logs
stamp "all done"
