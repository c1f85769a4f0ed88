"""One run on a GPU machine that says how dash-jax does there.

    bash bench/device_check.sh                 # the GPU run (< 8 min on an H200)
    bash bench/device_check.sh --smoke --out D # toy sizes on CPU (CI)
    python -m bench.device_check --smoke       # the same, from the repo root

Runs the GPU-relevant tests, times ResNet-18 (CIFAR size) SGD and SAM steps
in float32 and bfloat16, per-step ('loop') and compiled-epoch ('scan', and
'scan-block': a fixed-length block of steps a host round trip),
vmapped seeds and separate processes sharing the device, the DASH direction
pass and evaluation, the PyTorch eager step on the same device, and a short
protocol end to end on random CIFAR-shaped data; projects the paper's
CIFAR-10 DASH and cold runs; writes one markdown table to OUT/device_check.md.
Every section has a share of a wall-clock budget: one that would start past
it is reported as skipped, so the table always comes back.

Modules, one job each: cli (arguments, the sections in order), sizes (GPU
and smoke sizes, row names), steps (every call into dash_jax.train and the
models), timing (the timed sections), processes, torch_rows, protocol
(dash_jax.run), projection, tests_row (pytest --junitxml), budget, rows,
render.
"""
