"""Callbacks: hooks called by ``fit`` (Keras-style names).

    on_train_begin(logs)  on_epoch_begin(epoch, logs)  on_batch_end(batch, logs)
    on_epoch_end(epoch, logs)  on_train_end(logs)

A callback stops training by setting ``model.stop_training = True``. ``on_batch_end`` is only
called when a callback overrides it; the fused whole-epoch fast path is then not used (it has no
per-batch hook).
"""

from __future__ import annotations


class Callback:
    model = None

    def set_model(self, model):
        self.model = model

    def on_train_begin(self, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_batch_end(self, batch, logs=None):
        pass

    @classmethod
    def wants_batches(cls):
        return cls.on_batch_end is not Callback.on_batch_end


class History(Callback):
    """Per-epoch logs: ``history.history["loss"]`` is a list with one value per epoch.

    ``history.epoch`` lists the epoch indices. Keys: ``loss`` (mean training cost of the epoch,
    L2 term included), ``lr``, and with validation data ``val_loss`` and ``val_accuracy``.
    """

    def __init__(self):
        self.history = {}
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for k, v in (logs or {}).items():
            self.history.setdefault(k, []).append(v)

    def __getitem__(self, key):
        return self.history[key]

    def __repr__(self):
        last = {k: (round(v[-1], 6) if isinstance(v[-1], float) else v[-1])
                for k, v in self.history.items() if v}
        return f"History({len(self.epoch)} epochs, last={last})"
