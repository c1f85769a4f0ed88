"""Separate processes sharing the device: P workers (`--worker`) each time
their own SGD step at once; their JSON lines make one aggregate row."""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

from bench.device_check.rows import Row
from bench.device_check.sizes import by_name
from bench.device_check.timing import time_steps

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def worker(sizes_name):
  """One of the separate processes: SGD float32 scan epochs; prints JSON."""
  row = time_steps(by_name(sizes_name), 'SGD', 'float32', modes=('scan-block',))['scan-block']
  print(json.dumps({'ms': row.ms, 'images_s': row.images_s}))


def time_processes(sizes, smoke):
  """P processes each timing its own SGD step on the same device at once."""
  env = dict(os.environ, XLA_PYTHON_CLIENT_MEM_FRACTION=f'{0.8 / sizes.processes:.2f}',
             XLA_PYTHON_CLIENT_PREALLOCATE='false')
  cmd = [sys.executable, '-m', 'bench.device_check', '--worker',
         'smoke' if smoke else 'full']
  start = time.perf_counter()
  procs = [subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
           for _ in range(sizes.processes)]
  outs = [p.communicate(timeout=600) for p in procs]
  wall = time.perf_counter() - start
  if any(p.returncode for p in procs):
    err = next(o[1] for p, o in zip(procs, outs) if p.returncode).strip().splitlines()
    return Row('', notes=f'failed: {err[-1] if err else "no output"}')
  res = [json.loads(o[0].strip().splitlines()[-1]) for o in outs]
  return Row('', statistics.mean(r['ms'] for r in res), sum(r['images_s'] for r in res),
             notes=f'aggregate of {sizes.processes} processes timed at once '
                   f'(they overlap, not exactly); {wall:.0f} s with startup and compiles')
