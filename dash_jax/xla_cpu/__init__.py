"""Kernels fast on XLA:CPU: convolution, max-pool and BatchNorm.

Drop-in for nn.Conv, nn.max_pool and nn.BatchNorm (same variables, same
numbers up to float rounding). The model registry (dash_jax/models.py)
injects them on CPU only; elsewhere the models use Flax's own modules.
"""
from __future__ import annotations

from dash_jax.xla_cpu.batchnorm import BatchNorm
from dash_jax.xla_cpu.conv import Conv, Policy, conv2d, max_pool

__all__ = ['BatchNorm', 'Conv', 'Policy', 'conv2d', 'max_pool']
