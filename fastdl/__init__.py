"""fastdl: fast, NumPy-compatible dense neural networks (Numba CPU, numba.cuda GPU kernels).

    import fastdl as fd
    model = fd.Sequential([fd.Dense(20, activation="relu"), fd.Dense(1, activation="sigmoid")],
                          input_dim=2, loss="binary_crossentropy", seed=0)
    model.fit(X, y, optimizer=fd.optim.SGD(lr=0.1), epochs=100, batch_size=64)
"""

from . import config  # noqa: F401  (sets OMP_WAIT_POLICY before numba starts)
from . import data, optim
from . import tune
from . import distributed  # noqa: F401  (imports no MPI until used)
from .backend import get_backend, set_backend, set_num_threads
from .diagnose import Diagnosis, diagnose
from .gradcheck import GradcheckResult, gradcheck
from .nn import Activation, Dense, Layer, Sequential
from .nn import BatchNorm, Dropout
from .data import Augment, Standardizer
from .train import EarlyStopping
from .io import load
from .model_file import ModelFileError
from .optim import EWA, ewa
from .precision import PrecisionUnavailable, bf16_supported
from .train import Callback, DivergenceError, History
from .train import LearningRateScheduler, ModelCheckpoint
from .train import GradientMonitor, callbacks  # fd.callbacks.GradientMonitor too

__version__ = "0.1.0"

__all__ = ["Sequential", "Dense", "Activation", "Layer", "optim", "data", "gradcheck",
           "GradcheckResult", "diagnose", "Diagnosis", "set_backend", "get_backend", "set_num_threads", "Callback",
           "History", "DivergenceError", "config"]
__all__ += ["load", "ModelFileError", "ModelCheckpoint", "LearningRateScheduler", "EWA", "ewa"]
__all__ += ["nn", "Dropout", "BatchNorm", "Standardizer", "Augment", "EarlyStopping"]
__all__ += ["tune", "distributed"]
__all__ += ["GradientMonitor", "callbacks"]
__all__ += ["bf16_supported", "PrecisionUnavailable"]
