"""Layers, losses and the Sequential model."""
from .layers import Activation, Dense, Layer
from .sequential import Sequential

__all__ = ["Activation", "Dense", "Layer", "Sequential"]
