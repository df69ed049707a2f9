"""Training loop, History and callbacks."""
from .callbacks import Callback, History
from .loop import DivergenceError

__all__ = ["Callback", "History", "DivergenceError"]
