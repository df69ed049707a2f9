"""FlatParams: every parameter of a model in one contiguous buffer, plus its gradient buffer.

Layout (llm.c style): all tensors that take the L2 penalty (Dense weights) come first, then
everything else (biases, batch-norm gamma/beta), so that

* an optimizer step is one fused kernel call over ``data``/``grad``, and
* the course's L2 term, which applies to weights only, is the prefix ``[0, n_decay)``.

Each layer gets named views (``view(layer_index, name)``) into both buffers; layers never own
parameter memory. Non-trainable state (batch-norm running statistics) lives in the layers.

Mixed precision (``fastdl/precision.py``): ``shadow`` holds the bfloat16 copy of the weight
prefix ``[0, n_decay)`` (uint16 bit patterns), the operands of the Dense GEMMs
(``shadow_view``). The optimizer's update kernel rewrites it after every step; every other
write of the parameters goes through :meth:`assign` / :meth:`restore`, which refresh it, so it
always equals ``bf16(data[:n_decay])``. Without mixed precision it has size 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ParamSpec:
    layer: int          # index of the owning layer in the model
    name: str           # "W", "b", "gamma", ...
    shape: tuple
    decay: bool         # takes the L2 penalty (weights only)


class FlatParams:
    """One parameter buffer and one gradient buffer with named views per layer."""

    def __init__(self, specs, dtype, backend, low_precision=False):
        self.dtype = np.dtype(dtype)
        self.backend = backend
        ordered = [s for s in specs if s.decay] + [s for s in specs if not s.decay]
        self.specs = ordered
        self.offsets = {}
        off = 0
        for s in ordered:
            self.offsets[(s.layer, s.name)] = (off, s.shape)
            off += int(np.prod(s.shape))
        self.size = off
        self.n_decay = sum(int(np.prod(s.shape)) for s in ordered if s.decay)
        self.data = backend.zeros((max(off, 0),), self.dtype)
        self.grad = backend.zeros((max(off, 0),), self.dtype)
        self.shadow = backend.zeros((self.n_decay if low_precision else 0,), np.uint16)

    def _slice(self, buf, layer, name):
        off, shape = self.offsets[(layer, name)]
        return buf[off:off + int(np.prod(shape))].reshape(shape)

    def view(self, layer, name):
        return self._slice(self.data, layer, name)

    def grad_view(self, layer, name):
        return self._slice(self.grad, layer, name)

    def shadow_view(self, layer, name):
        """The bfloat16 (uint16) view of a weight tensor in ``shadow`` (mixed precision)."""
        return self._slice(self.shadow, layer, name)

    def _refresh_shadow(self, lo=0, hi=None):
        """shadow[lo:hi] = bf16(data[lo:hi]) (clipped to the weight prefix)."""
        hi = self.shadow.shape[0] if hi is None else min(hi, self.shadow.shape[0])
        if hi > lo:
            self.backend.k.to_bfloat16(self.shadow[lo:hi], self.data[lo:hi])

    def offset(self, layer, name):
        return self.offsets[(layer, name)][0]

    def host_copy(self, layer, name) -> np.ndarray:
        return self.backend.to_numpy(self.view(layer, name)).copy()

    def assign(self, layer, name, value: np.ndarray):
        """Copy a host array into one named tensor (shape already checked by the caller)."""
        off, shape = self.offsets[(layer, name)]
        n = int(np.prod(shape))
        if self.backend.on_device:
            self.data[off:off + n].copy_to_device(
                np.ascontiguousarray(value, dtype=self.dtype).reshape(-1))
        else:
            self.data[off:off + n] = np.asarray(value, dtype=self.dtype).reshape(-1)
        self._refresh_shadow(off, off + n)

    def snapshot(self) -> np.ndarray:
        """A host copy of the whole parameter buffer."""
        return self.backend.to_numpy(self.data).copy()

    def restore(self, values):
        """Copy a whole parameter vector (host array, or a backend array of the same size)."""
        if self.backend.on_device:
            self.data.copy_to_device(values)
        else:
            self.data[...] = values
        self._refresh_shadow()
