"""Numba CPU backend (the default): the reference's kernels as ``@njit`` passes around BLAS.

Same file names, function names and signatures as ``fastdl.kernels.reference``; each kernel's
docstring says in its first line how it differs from the reference.
"""
from .activations import activation_forward, activation_backward, softmax_forward  # noqa: F401
from .dense import dense_forward, dense_backward  # noqa: F401
from .sparse import csr_dense_forward, csr_dense_backward  # noqa: F401
from .losses import softmax_cross_entropy, sigmoid_binary_cross_entropy, mean_squared_error  # noqa: F401
from .losses import exp_half_poisson_deviance, weighted_exp_half_poisson_deviance  # noqa: F401
from .losses import (weighted_softmax_cross_entropy, weighted_sigmoid_binary_cross_entropy,  # noqa: F401
                     weighted_mean_squared_error, correct_predictions)
from .optim import sgd_update, momentum_update, rmsprop_update, adam_update  # noqa: F401
from .batching import gather_rows, gather_csr_rows  # noqa: F401
from .epoch import train_epoch  # noqa: F401
from .reductions import sum_squares  # noqa: F401
from .precision import to_bfloat16, from_bfloat16  # noqa: F401
from .blas import gemm  # noqa: F401
from .dropout import dropout_forward, dropout_backward  # noqa: F401
from .batchnorm import batchnorm_forward_train, batchnorm_forward_eval, batchnorm_backward  # noqa: F401
from ._openblas import warm as _warm_gemm  # noqa: F401  (fd.warmup: the blocked GEMM path too)
from .augment import augment_images  # noqa: F401

#: The whole-epoch kernel beats the step path for tiny nets (no Python per batch), so the
#: training loop uses it for small dense-only models (see config.FUSED_EPOCH_MAX_WEIGHTS).
FUSED_EPOCH_PAYS = True
