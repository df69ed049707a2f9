"""The exceptions ``fit`` raises to stop a run (a leaf module: the training loop, the
distributed package and the scikit-learn wrappers import it without importing each other)."""

from __future__ import annotations


class DivergenceError(FloatingPointError):
    """Training produced a non-finite cost; the model keeps its last finite parameters."""


class Preempted(BaseException):
    """``fit`` stopped early because the process received a preemption signal
    (``fit(..., preemption_signals=...)``; SIGTERM by default), after finishing the batch in
    progress, writing a resumable checkpoint and running the callbacks' ``on_train_end``.

    Like ``KeyboardInterrupt`` it derives from ``BaseException``, so a generic
    ``except Exception`` (a trial runner, a retry loop) does not swallow the request to stop.

    Attributes: ``signal`` (its name, e.g. "SIGTERM"); ``epoch`` (epochs completed) and
    ``batch`` (batches completed in the next epoch: 0 at an epoch boundary), ``step`` (updates
    taken in all); ``checkpoint``, the file written (None when the run had nowhere to write
    one: no ``ModelCheckpoint`` that saves every state and no ``preempt_path``); ``history``,
    the run's History (its ``stopped_at`` says the same). Resume with ``fit(...,
    resume_from=checkpoint)`` (or ``resume_from=model.history`` in the same process): the run
    ends with the parameters an unbroken run would have.
    """

    def __init__(self, signal, epoch, batch, step, checkpoint=None, history=None):
        self.signal, self.epoch, self.batch, self.step = signal, epoch, batch, step
        self.checkpoint, self.history = checkpoint, history
        where = f"after step {step} (epoch {epoch + 1}, batch {batch})" if batch else \
            f"after step {step} (the end of epoch {epoch})"
        if checkpoint is not None:
            then = (f"checkpoint written to {checkpoint!r}; resume with fit(..., "
                    f"resume_from={checkpoint!r})")
        else:
            then = ("no checkpoint was written: the run had no ModelCheckpoint saving every "
                    "state and no preempt_path; resume in this process with fit(..., "
                    "resume_from=model.history)")
        super().__init__(f"training stopped by {signal} {where}; {then}")

    def __reduce__(self):        # picklable (process pools re-raise it in the parent)
        return type(self), (self.signal, self.epoch, self.batch, self.step, self.checkpoint)
