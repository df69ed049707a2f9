"""Layers, losses and the Sequential model."""
from .batchnorm import BatchNorm, batchnorm_momentum_from_torch, batchnorm_momentum_to_torch
from .layers import Activation, Dense, Layer
from .regularization import Dropout
from .sequential import Sequential

__all__ = ["Activation", "Dense", "Layer", "Sequential", "Dropout", "BatchNorm",
           "batchnorm_momentum_from_torch", "batchnorm_momentum_to_torch"]
