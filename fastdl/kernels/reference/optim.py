"""Optimizer updates over the flat parameter buffer (reference: the spec).

Legend
------
params   (n,)  flat parameters, updated in place. Weights come first: the course's L2 term, which
               applies to weights only, is the prefix ``[0, n_l2)``.
<state>  (n,)  one 1-D array per state row (velocity, moments), updated in place.
grads    (n,)  gradients of the loss without its L2 term; never modified.
scalars        Python numbers; the arithmetic runs in the dtype of ``params``.
l2, n_l2       the course's L2 gradient term, ``l2 = lambda / m`` on the first ``n_l2`` entries.

Every kernel first forms the effective gradient (coupled terms, as PyTorch's ``weight_decay``):

    g = grads + weight_decay * params          (all entries)
    g[:n_l2] += l2 * params[:n_l2]             (weights only: the loss's L2 term)

Argument order is the same in every backend: params, state rows, grads, hyperparameters, then
``l2, n_l2`` last.

sgd_update(params, grads, lr, weight_decay, l2, n_l2)
    p <- p - lr * g

momentum_update(params, velocity, grads, lr, beta, dampening, nesterov, weight_decay, l2, n_l2)
    v <- beta * v + (1 - dampening) * g
    d <- (1 - dampening) * g + beta * v    if nesterov    else    v
    p <- p - lr * d
    dampening = beta is the course's EWA form; dampening = 0 is PyTorch's/the classic form.
    With dampening = 0 the Nesterov direction is PyTorch's ``g + beta * v``.

rmsprop_update(params, square_avg, grads, lr, beta, eps, weight_decay, l2, n_l2)
    s <- beta * s + (1 - beta) * g^2
    p <- p - lr * g / (sqrt(s) + eps)

adam_update(params, m, v, grads, lr, beta1, beta2, eps, step, weight_decay, decoupled_decay,
            l2, n_l2)
    m <- beta1 * m + (1 - beta1) * g
    v <- beta2 * v + (1 - beta2) * g^2
    m_hat = m / (1 - beta1^step),   v_hat = v / (1 - beta2^step)       (step is 1-based)
    p <- p - lr * decoupled_decay * p - lr * m_hat / (sqrt(v_hat) + eps)
    decoupled_decay > 0 is AdamW (Loshchilov & Hutter; PyTorch/Keras scale it by lr). The decay
    uses p before this step's update, as PyTorch's ``p.mul_(1 - lr * wd)`` does first.
"""

import numpy as np


def _effective_grad(params, grads, weight_decay, l2, n_l2):
    g = grads.copy()
    if weight_decay != 0.0:
        g += weight_decay * params
    if l2 != 0.0 and n_l2 > 0:
        g[:n_l2] += l2 * params[:n_l2]
    return g


def sgd_update(params, grads, lr, weight_decay, l2, n_l2):
    lr, weight_decay, l2 = float(lr), float(weight_decay), float(l2)
    g = _effective_grad(params, grads, weight_decay, l2, int(n_l2))
    params -= lr * g


def momentum_update(params, velocity, grads, lr, beta, dampening, nesterov, weight_decay, l2,
                    n_l2):
    lr, beta, dampening = float(lr), float(beta), float(dampening)
    g = _effective_grad(params, grads, float(weight_decay), float(l2), int(n_l2))
    velocity *= beta
    velocity += (1.0 - dampening) * g
    if nesterov:
        d = (1.0 - dampening) * g + beta * velocity
    else:
        d = velocity
    params -= lr * d


def rmsprop_update(params, square_avg, grads, lr, beta, eps, weight_decay, l2, n_l2):
    lr, beta, eps = float(lr), float(beta), float(eps)
    g = _effective_grad(params, grads, float(weight_decay), float(l2), int(n_l2))
    square_avg *= beta
    square_avg += (1.0 - beta) * g * g
    params -= lr * g / (np.sqrt(square_avg) + eps)


def adam_update(params, m, v, grads, lr, beta1, beta2, eps, step, weight_decay,
                decoupled_decay, l2, n_l2):
    lr, beta1, beta2, eps = float(lr), float(beta1), float(beta2), float(eps)
    decoupled_decay = float(decoupled_decay)
    g = _effective_grad(params, grads, float(weight_decay), float(l2), int(n_l2))
    m *= beta1
    m += (1.0 - beta1) * g
    v *= beta2
    v += (1.0 - beta2) * g * g
    m_hat = m / (1.0 - beta1 ** int(step))
    v_hat = v / (1.0 - beta2 ** int(step))
    if decoupled_decay != 0.0:
        params -= (lr * decoupled_decay) * params
    params -= lr * m_hat / (np.sqrt(v_hat) + eps)


def _fused_update(params, grads, state, opt_kind, hyper, step, l2, n_l2):
    """Optimizer ``opt_kind`` (fastdl.kernels.OPTIMIZERS) with float64 ``hyper`` packed as:

    0 sgd       [lr, weight_decay]                                   state: none
    1 momentum  [lr, beta, dampening, nesterov (0/1), weight_decay]  state: [velocity]
    2 rmsprop   [lr, beta, eps, weight_decay]                        state: [square_avg]
    3 adam      [lr, beta1, beta2, eps, weight_decay, decoupled]     state: [m, v]

    ``step`` is 1-based (Adam's t). The optimizers' ``fused_spec()`` build these arrays.
    """
    if opt_kind == 0:
        sgd_update(params, grads, hyper[0], hyper[1], l2, n_l2)
    elif opt_kind == 1:
        momentum_update(params, state[0], grads, hyper[0], hyper[1], hyper[2], hyper[3] != 0.0,
                        hyper[4], l2, n_l2)
    elif opt_kind == 2:
        rmsprop_update(params, state[0], grads, hyper[0], hyper[1], hyper[2], hyper[3], l2, n_l2)
    elif opt_kind == 3:
        adam_update(params, state[0], state[1], grads, hyper[0], hyper[1], hyper[2], hyper[3],
                    step, hyper[4], hyper[5], l2, n_l2)
    else:
        raise ValueError(f"unknown optimizer code {opt_kind}")
