"""How a ``fit`` is spread over processes: the few hooks the training loop calls.

The loop (``loop.py``) owns the run: epochs, steps, callbacks, checkpoints, preemption. What
depends on how many processes train together is asked of a strategy object, so the loop
imports no distribution machinery. :class:`SingleProcess` is the strategy of an ordinary
``fit``; ``fastdl.distributed.DataParallel`` (MPI data parallelism) subclasses it, and
``Sequential.fit(..., distributed=...)`` chooses which one the loop gets.

Hooks, in the order a run calls them:

``run(model, fit)``
    Call ``fit()`` (the whole run) and return its History; a strategy wraps it with what must
    surround a run (data parallelism: the communicator, failure notices, aborting the other
    ranks when one fails).
``check_arguments(sample_weight)``
    Refuse arguments this strategy cannot honour, before anything is read.
``fit_standardizer(model, X)``
    Fit an unfitted ``model.standardizer`` on the training inputs.
``setup(model, source, epochs, batch_size, l2, shuffle, drop_last)``
    The data source this process trains from (its shard of every batch).
``reduce(model, ws, mb, loss_slot, sq_slot, l2, stop)``
    After backward, before the optimizer step: turn this process's gradient and batch loss
    into the global batch's, and return whether any process asked to stop (``stop``: this
    process's preemption flag), so that every process stops after the same step.
``agree(stop)``
    The same decision where no step follows (the end of an epoch).
``end_epoch(model)``
    Make the processes' non-trained state (batch-norm running statistics) agree.
``sum_counts(values)``
    A small float64 host vector summed over the processes (the training accuracy's counts).
``prepare_hook(prepare)``, ``verbose(verbose)``
    The batch-preparation hook and the verbosity of this process.

Attributes: ``distributed`` (more than one process: features that need all the rows in one
process, such as sparse input, refuse it), ``writes_files`` (this process writes checkpoints;
the others skip them),
``reduces_every_step`` (the whole-epoch fused kernel, which has no per-step hook, cannot be
used).
"""

from __future__ import annotations


class SingleProcess:
    """One process trains on all the data: every hook is the identity."""

    distributed = False
    writes_files = True
    reduces_every_step = False

    def run(self, model, fit):
        return fit()

    def check_arguments(self, sample_weight=None):
        pass

    def fit_standardizer(self, model, X):
        if model.standardizer is not None:      # fitted on the training inputs only, once
            model.standardizer._fit_for(model, X)

    def setup(self, model, source, epochs, batch_size, l2, shuffle, drop_last):
        return source

    def reduce(self, model, ws, mb, loss_slot, sq_slot, l2, stop=False):
        return stop

    def agree(self, stop):
        return stop

    def end_epoch(self, model):
        pass

    def sum_counts(self, values):
        return values

    def prepare_hook(self, prepare):
        return prepare

    def verbose(self, verbose):
        return verbose

    def __repr__(self):
        return f"{type(self).__name__}()"
