#!/usr/bin/env bash
# The checks a machine with a GPU runs (under 5 minutes on one GPU):
#
#   benchmarks/device_check.sh                 # on CUDA
#   benchmarks/device_check.sh --device cpu    # the same checks, small, on the CPU (CI)
#
# 1. the benchmark table (benchmarks/bench_train.py) on the device, data held on it: fp32, then
#    16-mixed and bf16-mixed, then compile=true (on the CPU: bf16-mixed only, fewer families);
# 2. the largest batch that fits for the CNN and the ResNet (a forward and backward pass, batch
#    doubled until the device runs out of memory; on the CPU capped at 1024);
# 3. the gradient norms under mixed precision equal those in fp32 within tolerance (per layer).
# Exit status: 0 when every check ran and the norms agree, else 1.
set -euo pipefail
cd "$(dirname "$0")/.."

DEVICE=cuda
if [[ "${1:-}" == "--device" ]]; then DEVICE="${2:?--device needs cuda or cpu}"; fi
if [[ "$DEVICE" != cuda && "$DEVICE" != cpu ]]; then echo "error: --device must be cuda or cpu, got $DEVICE." >&2; exit 2; fi
PY=${PYTHON:-python}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

if [[ "$DEVICE" == cuda ]]; then
  FAMILIES=(--model mlp --model cnn --model resnet --model lstm --model gru --model rnn --model linear --model gan)
  STEPS=200
  PRECISIONS=(16-mixed bf16-mixed)
  COMPILE=1
else
  FAMILIES=(--model mlp --model linear)
  STEPS=20
  PRECISIONS=(bf16-mixed)
  COMPILE=0
fi

echo "== 1. benchmark table on $DEVICE (fp32)"
$PY benchmarks/bench_train.py --device "$DEVICE" --rounds 1 --epochs 2 --steps "$STEPS" "${FAMILIES[@]}"
for precision in "${PRECISIONS[@]}"; do
  echo "== 1. benchmark table on $DEVICE, trainer.precision=$precision"
  $PY benchmarks/bench_train.py --device "$DEVICE" --rounds 1 --epochs 2 --steps "$STEPS" --model mlp --model cnn \
    --set "trainer.precision=$precision"
done
if [[ "$COMPILE" == 1 ]]; then
  echo "== 1. benchmark table on $DEVICE, compile=true"
  $PY benchmarks/bench_train.py --device "$DEVICE" --rounds 1 --epochs 2 --steps "$STEPS" --model mlp --model cnn \
    --set compile=true
fi

echo "== 2. largest batch that fits, and 3. gradient norms under mixed precision"
DEVICE="$DEVICE" $PY - <<'EOF'
import os
import sys

import torch

from datamodules.spec import DataSpec
from zoo.nets.cnn import CNN
from zoo.nets.resnet import ResNet

device = torch.device(os.environ["DEVICE"])
cap = 2**20 if device.type == "cuda" else 1024
spec = DataSpec(name="mnist-sized", kind="image", shape=(1, 28, 28), num_classes=10,
                class_names=tuple(str(i) for i in range(10)))


def fits(net, batch: int) -> bool:
    try:
        x = torch.randn(batch, *spec.shape, device=device)
        net(x).logsumexp(1).mean().backward()
        return True
    except torch.OutOfMemoryError:
        return False
    finally:
        net.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()


for name, build in (("cnn", lambda: CNN(spec)), ("resnet", lambda: ResNet(spec))):
    net, batch = build().to(device), 64
    while batch * 2 <= cap and fits(net, batch * 2):
        batch *= 2
    note = f" (capped at {cap} on the CPU)" if device.type == "cpu" else ""
    print(f"{name}: largest batch that fits on {device.type}: {batch}{note}")

failed = False
for dtype in ((torch.float16, torch.bfloat16) if device.type == "cuda" else (torch.bfloat16,)):
    torch.manual_seed(0)
    net = CNN(spec).to(device)
    x, y = torch.randn(256, *spec.shape, device=device), torch.randint(0, 10, (256,), device=device)

    def norms(autocast: bool) -> dict:
        net.zero_grad(set_to_none=True)
        scale = 2.0**14 if dtype == torch.float16 else 1.0  # fp16: a scaled loss, unscaled gradients
        with torch.autocast(device.type, dtype=dtype, enabled=autocast):
            loss = torch.nn.functional.cross_entropy(net(x), y)
        (loss * scale).backward()
        return {n: (p.grad.float() / scale).norm().item() for n, p in net.named_parameters()}

    full, mixed = norms(False), norms(True)
    worst = max(abs(mixed[n] - full[n]) / max(full[n], 1e-8) for n in full)
    ok = worst <= 0.05
    failed |= not ok
    print(f"gradient norms, {str(dtype).split('.')[-1]} autocast vs fp32: largest relative difference "
          f"{worst:.4f} over {len(full)} tensors ({'ok' if ok else 'over the 0.05 tolerance'})")
sys.exit(1 if failed else 0)
EOF
echo "== device check on $DEVICE: done"
