#!/usr/bin/env bash
# One call on a GPU machine runs every benchmark and leaves the results in $OUT:
#   gpu.txt         card, memory, driver, clocks, library versions
#   dcgan.log       50,000 DCGAN images at 64 px            (bench/sample.py --no-ddim)
#   train.log       DDIM training vs diffusers, batch 64    (bench/train.py)
#   sample.log      DDIM sampling vs DDIMPipeline, 50 steps (bench/sample.py --no-dcgan)
#   smoke.log       DDIM.train on the device: checkpoint, stop, resume, save, load, sample
#   train_cg.log    ours at batch 64 with CUDA graphs (compile mode reduce-overhead), when time is left
#   train_big.log   training at batch 256, when time is left
#
# On the GPU machine (diffusers travels as wheels in .whl/, see bench/README.md):
#   bash bench/gpu_check.sh
# Dry run of the same steps on a CPU, tiny sizes (a few minutes):
#   DEVICE=cpu PYTHON=.venv/bin/python bash bench/gpu_check.sh
set -u -o pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_check_out}
DEVICE=${DEVICE:-cuda}
PY=${PYTHON:-python3}
BUDGET_S=${BUDGET_S:-380}   # stop starting optional steps after this many seconds
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

if [ "$DEVICE" = cuda ]; then
  if ls .whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
      && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
  fi
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm,power.limit --format=csv >"$OUT/gpu.txt" 2>&1
  DDIM_TRAIN=(--batch 64 --steps 30 --warmup 5)
  DDIM_SAMPLE=(--batch 500 --images 1000 --steps 50)
  DCGAN=(--dcgan-images 50000 --dcgan-batch 10000)
  BIG=(--batch 256 --steps 20 --warmup 3)
else
  SMALL=(--preset tiny --threads 1)
  DDIM_TRAIN=("${SMALL[@]}" --batch 4 --steps 2 --warmup 1)
  DDIM_SAMPLE=("${SMALL[@]}" --batch 4 --images 4 --steps 3)
  DCGAN=(--threads 1 --dcgan-images 64 --dcgan-batch 32)
  BIG=("${SMALL[@]}" --batch 8 --steps 2 --warmup 1)
fi
$PY - >>"$OUT/gpu.txt" 2>&1 <<'EOF'
import platform, torch
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda)
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("device", p.name, "SMs", p.multi_processor_count, "memory GiB", round(p.total_memory / 2**30, 1))
try:
    import diffusers
    print("diffusers", diffusers.__version__)
except Exception as exc:  # the reference rows fail later with the reason
    print("diffusers missing:", exc)
EOF
cat "$OUT/gpu.txt"

step() {  # step NAME TIMEOUT_S COMMAND...: run, log to $OUT/NAME.log, never abort the script
  local name=$1 limit=$2; shift 2
  echo "=== $name (limit ${limit}s, at ${SECONDS}s)"
  timeout "$limit" "$@" 2>&1 | grep -v -e '^USDT' -e 'should be kept in float32' | tee "$OUT/$name.log"
  echo "=== $name exit ${PIPESTATUS[0]} at ${SECONDS}s"
}

step dcgan 60 $PY bench/sample.py --device "$DEVICE" --no-ddim "${DCGAN[@]}"
step train 170 $PY bench/train.py --device "$DEVICE" "${DDIM_TRAIN[@]}"
step sample 120 $PY bench/sample.py --device "$DEVICE" --no-dcgan "${DDIM_SAMPLE[@]}"
# The real training loop on the device: checkpoint, stop, resume, save, load, sample (small model, no compile).
step smoke 60 $PY - "$DEVICE" <<'PYEOF'
import sys, tempfile, torch
from pathlib import Path
sys.path.insert(0, ".")
from apps.ml.ddim import DDIM
device = sys.argv[1]
if device == "cpu":
    torch.set_num_threads(1)  # 2 threads on 2 shared cores spin and crawl
cfg = DDIM.default_config(resolution=32, channels=3, preset="quick", image_count=1000, device=device)
cfg.update(base_channels=32, channel_mults=[1, 2], num_res_blocks=1, total_steps=40, checkpoint_every=20,
           report_every=10, compile=False, grid_images=16, grid_steps=5, batch_size=16)
images = torch.rand(150, 3, 32, 32) * 2 - 1
with tempfile.TemporaryDirectory() as tmp:
    first = DDIM(cfg, device=device)
    r = first.train(images, checkpoint_dir=Path(tmp), should_stop=lambda: first.step >= 20)
    second = DDIM(cfg, device=device)
    seen = []
    r2 = second.train(images, checkpoint_dir=Path(tmp), on_progress=lambda p: seen.append(p.step))
    second.save(Path(tmp) / "model")
    again = DDIM.load(Path(tmp) / "model", device=device)
    a, b = second.sample(8, seed=3, steps=10), again.sample(8, seed=3, steps=10)
    print("stopped at", r.steps, "resumed reports", seen, "final", r2.steps, "loss", r2.final_losses,
          "same samples after load:", bool(torch.equal(a, b)), tuple(a.shape), a.dtype)
    assert r.stopped_early and r.steps == 20 and seen[0] == 30 and r2.steps == 40 and torch.equal(a, b)
    print("smoke OK")
PYEOF
if [ "$SECONDS" -lt $((BUDGET_S - 90)) ]; then
  step train_cg $((BUDGET_S - SECONDS)) $PY bench/train.py --device "$DEVICE" "${DDIM_TRAIN[@]}" --no-diffusers \
    --compile-mode reduce-overhead
fi
if [ "$SECONDS" -lt $((BUDGET_S - 90)) ]; then
  step train_big $((BUDGET_S - SECONDS)) $PY bench/train.py --device "$DEVICE" "${BIG[@]}"
fi

echo; echo "===== summary ($SECONDS s)"
head -3 "$OUT/gpu.txt"
for f in dcgan train sample smoke train_cg train_big; do
  [ -f "$OUT/$f.log" ] && grep -A6 -e '^DDIM training' -e '^Sampling' "$OUT/$f.log" | grep -v '^--$'
  [ -f "$OUT/$f.log" ] && grep -e 'Error' -e 'smoke OK' -e 'stopped at' "$OUT/$f.log"
done
exit 0
