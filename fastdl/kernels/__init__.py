"""Kernel registry: the names every backend must export, file by file.

Each backend package (``reference``, ``cpu``, ``cuda``) has one module per file name below and
exports exactly these public functions with the same signatures. ``tests/test_kernel_registry.py``
enforces it, and kernel tests iterate over this table, so registering a kernel here puts it
under test.

Contract (docs/design.md): outputs first, the caller allocates every buffer, kernels never
validate data or draw random numbers (an unknown integer code raises ValueError). A buffer
of size 0 passed for an optional output (``dX``, a
bias) means "skip it".

Mixed precision (``compute_dtype="bfloat16"``): ``gemm`` is the one GEMM of every dense kernel,
the provider layer (BLAS for float operands; oneDNN or an exact emulation for bfloat16 ones);
``precision`` converts. See ``reference/blas.py`` and ``reference/precision.py``.

Gradient clipping has no kernel of its own: the optimizer updates (``optim``) clip inline, from
the squared global norm that ``reductions.sum_squares`` writes (see ``reference/optim.py``).

Sparse input (``scipy.sparse`` X, CSR rows as examples): ``sparse`` holds the first Dense
layer's products with a CSR batch (``data, indices, indptr`` in place of X; see
``reference/sparse.py``), and ``batching.gather_csr_rows`` assembles such a batch.

Activation codes (``activation`` arguments) are the integers in ``ACTIVATIONS``.
Loss codes are the integers in ``LOSSES``.
"""

KERNELS = {
    "activations": ("activation_forward", "activation_backward", "softmax_forward"),
    "dense": ("dense_forward", "dense_backward"),
    "sparse": ("csr_dense_forward", "csr_dense_backward"),
    "losses": ("softmax_cross_entropy", "sigmoid_binary_cross_entropy", "mean_squared_error",
               "weighted_softmax_cross_entropy", "weighted_sigmoid_binary_cross_entropy",
               "weighted_mean_squared_error", "exp_half_poisson_deviance",
               "weighted_exp_half_poisson_deviance", "correct_predictions"),
    "optim": ("sgd_update", "momentum_update", "rmsprop_update", "adam_update"),
    "batching": ("gather_rows", "gather_csr_rows"),
    "epoch": ("train_epoch",),
    "reductions": ("sum_squares",),
    "dropout": ("dropout_forward", "dropout_backward"),
    "batchnorm": ("batchnorm_forward_train", "batchnorm_forward_eval", "batchnorm_backward"),
    "precision": ("to_bfloat16", "from_bfloat16"),
    "blas": ("gemm",),
    "augment": ("augment_images",),
}

#: Storage dtype of bfloat16 arrays: uint16 bit patterns (``reference/precision.py``). Kernels
#: that take optional bfloat16 outputs (``A16``, ``dZ16``, the optimizers' ``shadow``) skip them
#: when they have size 0.
BF16 = "uint16"

#: Activation name -> integer code understood by every kernel.
ACTIVATIONS = {"linear": 0, "relu": 1, "leaky_relu": 2, "tanh": 3, "sigmoid": 4}
LINEAR, RELU, LEAKY_RELU, TANH, SIGMOID = range(5)

#: Loss name -> integer code (used by the fused-epoch kernels).
LOSSES = {"binary_crossentropy": 0, "categorical_crossentropy": 1, "mse": 2, "poisson": 3}
BCE, CCE, MSE, POISSON = range(4)


def all_kernel_names():
    """Every (file, name) pair of the registry."""
    return [(f, n) for f, names in KERNELS.items() for n in names]

#: Optimizer name -> integer code (fused-epoch kernels dispatch on it; the float64 ``hyper``
#: packing and state rows of each are documented in ``reference/optim.py:_fused_update``).
#: AdamW is the Adam kernel with its decoupled weight decay set.
OPTIMIZERS = {"sgd": 0, "momentum": 1, "rmsprop": 2, "adam": 3}
