"""Reference numbers the timing benchmarks compare against: accelerator peaks
and the paper's step counts (bench/throughput.py and bench/device_check/)."""
from __future__ import annotations

# Dense (no sparsity) tensor-core peaks, TFLOP/s, by jax device_kind:
# (bfloat16, TF32). XLA runs float32 convolutions and matmuls as TF32 there.
PEAK_TFLOPS = {
    'NVIDIA H200': (989.0, 494.7),
    'NVIDIA H100 80GB HBM3': (989.0, 494.7),
    'NVIDIA H100 SXM5 80GB': (989.0, 494.7),
    'NVIDIA H100 PCIe': (756.0, 378.0),
    'NVIDIA H100 NVL': (835.5, 417.5),
    'NVIDIA A100-SXM4-80GB': (312.0, 156.0),
    'NVIDIA A100-SXM4-40GB': (312.0, 156.0),
    'NVIDIA A100-PCIE-40GB': (312.0, 156.0),
    'NVIDIA A100 80GB PCIe': (312.0, 156.0),
    'NVIDIA L4': (121.0, 60.0),
    'NVIDIA A10G': (70.0, 35.0),
}


def peak_tflops(device_kind: str, dtype: str) -> float | None:
  """The dense peak for `dtype` ('bfloat16'; anything else is TF32), or None
  for a device not in the table."""
  peaks = PEAK_TFLOPS.get(device_kind)
  return None if peaks is None else peaks[0 if dtype == 'bfloat16' else 1]


# The paper's CIFAR-10 SGD mean steps per experiment (50 experiments), from
# its Table: cold 2916, warm 665, S&P 2766, DASH 3454.
PAPER_MEAN_STEPS = {'cold': 2916, 'warm': 665, 'sp': 2766, 'dash': 3454}
PAPER_EXPERIMENTS = 50
PAPER_CHUNK, PAPER_TEST = 1000, 10_000  # CIFAR-10 images per chunk; test images
