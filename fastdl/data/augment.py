"""Data augmentation, applied to each training mini-batch by ``fit``:

    model.fit(X, y, augment=fd.Augment(image_shape=(28, 28), flip=True, shift=2, noise=0.05))
    model.fit(X, y, augment=fd.Augment(noise=0.05))        # any rows: tabular inputs too

For flips and shifts each row of X is an image flattened in C order from ``image_shape`` =
(H, W) or (H, W, C) (channels last); noise alone needs no image shape. Per example,
independently:

* ``flip``: mirror left-right with probability 1/2;
* ``shift``: translate by (dy, dx), each uniform in [-shift, shift] pixels, filling with 0
  (the mean, when the inputs are standardized);
* ``noise``: add Gaussian noise of standard deviation ``noise``.

Draws come from ``np.random.default_rng([seed, 0xA06, epoch, batch])``: a pure function of the
model's seed and the batch's position, so a resumed run augments exactly as an uninterrupted
one. Validation data are never augmented. With ``model.standardizer`` set, augmentation acts on
the standardized batch.
"""

from __future__ import annotations

import math
import numbers

import numpy as np


def _int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name}={value!r} is invalid; expected an integer >= {minimum}")
    return int(value)


class Augment:
    """Random flips and shifts (image-shaped inputs) and Gaussian noise (any inputs).

    Parameters
    ----------
    image_shape : (H, W) or (H, W, C), optional
        Shape of one example; rows of X are these images flattened in C order. Default: a
        square grayscale image, H = W = sqrt(n_features) (an error when that is not an
        integer).
    flip : bool
        Horizontal flips with probability 1/2.
    shift : int >= 0
        Largest shift in pixels, vertical and horizontal (smaller than H and W).
    noise : float >= 0
        Standard deviation of additive Gaussian noise (works on any rows, tabular included).
    """

    def __init__(self, image_shape=None, flip=False, shift=0, noise=0.0):
        if image_shape is not None:
            if not isinstance(image_shape, (tuple, list)) or len(image_shape) not in (2, 3):
                raise ValueError(f"image_shape={image_shape!r} is invalid; expected (H, W) or "
                                 "(H, W, C)")
            image_shape = tuple(_int("image_shape", d, 1) for d in image_shape)
        self.image_shape = image_shape
        if not isinstance(flip, (bool, np.bool_)):
            raise TypeError(f"flip={flip!r} is invalid; expected True or False")
        self.flip = bool(flip)
        self.shift = _int("shift", shift, 0)
        if isinstance(noise, bool) or not isinstance(noise, numbers.Real) \
                or not np.isfinite(noise) or noise < 0:
            raise ValueError(f"noise={noise!r} is invalid; expected a finite number >= 0")
        self.noise = float(noise)
        if image_shape is not None:
            self._check_shift(image_shape)

    def _check_shift(self, shape):
        if self.shift and self.shift >= min(shape[0], shape[1]):
            raise ValueError(f"shift={self.shift} is invalid for images of {shape[0]}x"
                             f"{shape[1]} pixels; expected a shift < {min(shape[0], shape[1])}")

    def shape_for(self, n_features):
        """(H, W, C) of the images in rows of ``n_features`` values; a clear error when the
        inputs are not image-shaped."""
        if self.image_shape is None:
            side = math.isqrt(n_features)
            if side * side != n_features or side < 2:
                raise ValueError(f"augment needs image-shaped inputs, but X has {n_features} "
                                 "features, which is not a square image; pass "
                                 "fd.Augment(image_shape=(H, W) or (H, W, C), ...) with "
                                 "H * W * C == n_features")
            shape = (side, side, 1)
        else:
            shape = self.image_shape + (1,) * (3 - len(self.image_shape))
            if int(np.prod(shape)) != n_features:
                raise ValueError(f"augment needs image-shaped inputs: image_shape="
                                 f"{self.image_shape} holds {int(np.prod(shape))} values per "
                                 f"example, but X has {n_features} features; expected "
                                 "H * W * C == n_features (rows flattened in C order)")
        self._check_shift(shape)
        return shape

    @property
    def needs_images(self):
        """Flips and shifts move pixels, so they need the image shape; noise does not."""
        return self.flip or bool(self.shift)

    def check_features(self, n_features):
        # a given image_shape must fit X even when only noise is drawn (it says what X is)
        if self.needs_images or self.image_shape is not None:
            self.shape_for(n_features)

    def apply(self, Xb, seed, epoch, batch):
        """Augment the host batch ``Xb`` (m, n_features) in place, from (seed, epoch, batch)."""
        m = Xb.shape[0]
        rng = np.random.default_rng([int(seed), 0xA06, int(epoch), int(batch)])
        if not self.needs_images:
            if self.noise:
                Xb += rng.standard_normal(Xb.shape, dtype=Xb.dtype) * Xb.dtype.type(self.noise)
            return
        H, W, C = self.shape_for(Xb.shape[1])
        imgs = Xb.reshape(m, H, W, C)
        if self.flip:
            f = rng.random(m) < 0.5
            imgs[f] = imgs[f, :, ::-1, :]
        if self.shift:
            s = self.shift
            dy = rng.integers(-s, s + 1, m)
            dx = rng.integers(-s, s + 1, m)
            rows = np.arange(H)[None, :] - dy[:, None]          # source row of each output row
            cols = np.arange(W)[None, :] - dx[:, None]
            valid = (((rows >= 0) & (rows < H))[:, :, None]
                     & ((cols >= 0) & (cols < W))[:, None, :])
            src = imgs[np.arange(m)[:, None, None], np.clip(rows, 0, H - 1)[:, :, None],
                       np.clip(cols, 0, W - 1)[:, None, :]]
            src[~valid] = 0
            imgs[...] = src
        if self.noise:
            imgs += rng.standard_normal(imgs.shape, dtype=Xb.dtype) * Xb.dtype.type(self.noise)

    def __repr__(self):
        return (f"Augment(image_shape={self.image_shape}, flip={self.flip}, shift={self.shift}, "
                f"noise={self.noise})")
