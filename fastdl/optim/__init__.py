"""Optimizers (one fused kernel call per step over a flat buffer), schedules and EWAs.

    opt = fd.optim.Adam(lr=1e-3)
    opt.step(params, grads)                  # flat NumPy arrays, updated in place
    model.fit(X, y, optimizer=opt, lr_schedule=fd.optim.InverseTimeDecay(1e-3, decay_rate=1))

Conventions of PyTorch and Keras are mapped in each class's docstring and in docs/optimizers.md.
"""
from .adam import Adam, AdamW
from .base import Optimizer
from .ewa import EWA, ewa
from .rmsprop import RMSprop
from .schedules import (Constant, ExponentialDecay, InverseTimeDecay, Lambda, PiecewiseConstant,
                        Schedule, SqrtDecay, StaircaseDecay, as_schedule)
from .sgd import SGD, Momentum

__all__ = ["Optimizer", "SGD", "Momentum", "RMSprop", "Adam", "AdamW", "EWA", "ewa",
           "Schedule", "Constant", "InverseTimeDecay", "StaircaseDecay", "ExponentialDecay",
           "SqrtDecay", "PiecewiseConstant", "Lambda", "as_schedule"]
