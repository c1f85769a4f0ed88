"""The SoTA setting's data augmentations, as jittable batch functions.

They run inside the jitted train step on the accelerator, on float pixels
(0..255) before normalisation, one random draw per example, and follow the
torchvision transforms of the original code: zero fill, nearest-neighbour
rotation, bilinear resized crop.
"""
from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp


def random_crop(key, x, pad: int = 4):
  """RandomCrop(size, padding=pad): zero-pad, then a random window."""
  n, h, w, c = x.shape
  padded = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  offsets = jax.random.randint(key, (n, 2), 0, 2 * pad + 1)
  return jax.vmap(lambda img, o: jax.lax.dynamic_slice(
      img, (o[0], o[1], 0), (h, w, c)))(padded, offsets)


def random_flip(key, x):
  """RandomHorizontalFlip(p=0.5)."""
  flip = jax.random.bernoulli(key, 0.5, (x.shape[0],))
  return jnp.where(flip[:, None, None, None], x[:, :, ::-1], x)


def rotate(x, theta):
  """Rotate each image by theta[i] radians counter-clockwise about its
  centre: nearest neighbour, zero fill (PIL's Image.rotate)."""
  _, h, w, _ = x.shape
  ys, xs = jnp.meshgrid(jnp.arange(h) + 0.5 - h / 2, jnp.arange(w) + 0.5 - w / 2,
                        indexing='ij')

  def one(img, t):
    cos, sin = jnp.cos(t), jnp.sin(t)
    src_x = jnp.floor(cos * xs - sin * ys + w / 2).astype(jnp.int32)
    src_y = jnp.floor(sin * xs + cos * ys + h / 2).astype(jnp.int32)
    inside = (src_x >= 0) & (src_x < w) & (src_y >= 0) & (src_y < h)
    pixels = img[jnp.clip(src_y, 0, h - 1), jnp.clip(src_x, 0, w - 1)]
    return jnp.where(inside[..., None], pixels, jnp.zeros((), x.dtype))
  return jax.vmap(one)(x, theta)


def random_rotation(key, x, degrees: float = 15.0):
  """RandomRotation(degrees): angle ~ U(-degrees, degrees)."""
  angle = jax.random.uniform(key, (x.shape[0],), minval=-degrees, maxval=degrees)
  return rotate(x, jnp.deg2rad(angle))


class Box(NamedTuple):
  """A crop's top-left corner and size, in pixels."""
  top: jax.Array
  left: jax.Array
  height: jax.Array
  width: jax.Array


def _crop_box(key, h, w, scale, ratio, attempts=10) -> Box:
  """torchvision RandomResizedCrop.get_params, vectorised over attempts:
  the first attempt that fits, else the whole (square) image."""
  k_area, k_ratio, k_i, k_j = jax.random.split(key, 4)
  area = h * w * jax.random.uniform(k_area, (attempts,), minval=scale[0],
                                    maxval=scale[1])
  aspect = jnp.exp(jax.random.uniform(k_ratio, (attempts,), minval=math.log(ratio[0]),
                                      maxval=math.log(ratio[1])))
  cw = jnp.round(jnp.sqrt(area * aspect))
  ch = jnp.round(jnp.sqrt(area / aspect))
  fits = (cw > 0) & (cw <= w) & (ch > 0) & (ch <= h)
  first = jnp.argmax(fits)
  ok = fits[first]
  ch = jnp.where(ok, ch[first], h)
  cw = jnp.where(ok, cw[first], w)
  top = jnp.floor(jax.random.uniform(k_i) * (h - ch + 1))
  left = jnp.floor(jax.random.uniform(k_j) * (w - cw + 1))
  return Box(top, left, ch, cw)


def resize_box(img, top, left, box_h, box_w):
  """Crop the box and resize it to the image's size, bilinear with
  half-pixel centres and edges clamped to the box, rounded to whole pixels
  (PIL's crop + resize(BILINEAR) for upsampling, which is all a box inside
  the image needs)."""
  h, w, _ = img.shape
  sy = jnp.clip((jnp.arange(h) + 0.5) * box_h / h - 0.5, 0, box_h - 1) + top
  sx = jnp.clip((jnp.arange(w) + 0.5) * box_w / w - 0.5, 0, box_w - 1) + left
  y0, x0 = jnp.floor(sy), jnp.floor(sx)
  wy, wx = (sy - y0)[:, None, None], (sx - x0)[None, :, None]
  y0, x0 = y0.astype(jnp.int32), x0.astype(jnp.int32)
  y1, x1 = jnp.minimum(y0 + 1, h - 1), jnp.minimum(x0 + 1, w - 1)
  rows0, rows1 = img[y0], img[y1]
  upper = rows0[:, x0] * (1 - wx) + rows0[:, x1] * wx
  lower = rows1[:, x0] * (1 - wx) + rows1[:, x1] * wx
  return jnp.round(upper * (1 - wy) + lower * wy)


def random_resized_crop(key, x, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
  """RandomResizedCrop to the input size (torchvision defaults)."""
  _, h, w, _ = x.shape

  def one(k, img):
    return resize_box(img, *_crop_box(k, h, w, scale, ratio))
  return jax.vmap(one)(jax.random.split(key, x.shape[0]), x)


OPS = {'crop': random_crop, 'flip': random_flip, 'rotate': random_rotation,
       'resized_crop': random_resized_crop}


@dataclasses.dataclass(frozen=True)
class Augment:
  """A named pipeline of OPS; hashable, so the train step can compile it in."""
  ops: tuple

  def __call__(self, key, x):
    for op, k in zip(self.ops, jax.random.split(key, len(self.ops))):
      x = OPS[op](k, x)
    return x
