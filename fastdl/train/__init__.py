"""Training loop, History and callbacks."""
from .callbacks import Callback, EarlyStopping, History, LearningRateScheduler
from .checkpoint import ModelCheckpoint
from .errors import DivergenceError, Preempted
from .progress import ProgressBar
from .monitor import GradientMonitor
from .logs import CSVLogger, TensorBoard

__all__ = ["Callback", "History", "DivergenceError", "Preempted", "LearningRateScheduler",
           "ModelCheckpoint", "ProgressBar", "EarlyStopping", "GradientMonitor", "CSVLogger",
           "TensorBoard"]
