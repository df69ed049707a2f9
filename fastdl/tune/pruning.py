"""Early stopping of poor trials: asynchronous successive halving (ASHA).

Successive halving (Jamieson & Talwalkar, AISTATS 2016) gives every trial a small budget, keeps
the best 1/η of them, multiplies the budget by η and repeats. ASHA (Li et al., "A System for
Massively Parallel Hyperparameter Tuning", MLSys 2020) makes it asynchronous so that no worker
waits for a rung to fill: the *rungs* are the resources r_k = min_resource · η^k (here: epochs),
and a trial that reaches rung k is stopped unless its score is in the top 1/η of all scores
recorded at rung k so far (its own included). This is the stopping variant used by Optuna's
``SuccessiveHalvingPruner`` and Ray Tune's ``ASHAScheduler``; like Optuna, while a rung holds
fewer than η scores only the best one so far continues:

    keep  ⇔  score ranks within the top max(1, ⌊n/η⌋) of the n scores at the rung (ties kept).

Workers must see each other's rung scores. A *board* holds them:

* :class:`SQLiteBoard` — a table ``rungs`` in an SQLite file (the search's ``storage`` file, or a
  temporary file when there is none), read and written inside one ``BEGIN IMMEDIATE``
  transaction per rung so concurrent workers never decide on a stale rung. Used for in-process
  executors, the local process pool and any other ``concurrent.futures.Executor`` (whose workers
  must see the same file system).
* :class:`DaskBoard` — a ``distributed.Variable`` guarded by a ``distributed.Lock`` on the Dask
  scheduler, so workers on other machines see the rungs without a shared file.
"""

from __future__ import annotations

import json
import math
import numbers
import sqlite3
import uuid

__all__ = ["ASHA", "SQLiteBoard", "DaskBoard"]


class ASHA:
    """Asynchronous successive halving.

    Parameters
    ----------
    min_resource : int >= 1
        The first rung, in the unit the objective reports (``step``: epochs for
        :class:`~fastdl.tune.ReportCallback`). Default 1.
    eta : int >= 2
        Reduction factor: rungs at min_resource · η^k, and 1/η of the trials at a rung continue.
        Default 3 (the papers' and Optuna's/Ray's default-ish choice; 1/3 kept per rung).
    max_resource : int or None
        No rung at or beyond it (a trial that gets there is never stopped). None: no limit (the
        objective's own epoch count ends every trial).
    """

    def __init__(self, min_resource=1, eta=3, max_resource=None):
        for name, v, lo in (("min_resource", min_resource, 1), ("eta", eta, 2)):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < lo:
                raise ValueError(f"ASHA: {name}={v!r} is invalid; expected an integer >= {lo}")
        if max_resource is not None and (isinstance(max_resource, bool)
                                         or not isinstance(max_resource, numbers.Integral)
                                         or max_resource <= min_resource):
            raise ValueError(f"ASHA: max_resource={max_resource!r} is invalid; expected None or "
                             f"an integer > min_resource={min_resource}")
        self.min_resource, self.eta = int(min_resource), int(eta)
        self.max_resource = None if max_resource is None else int(max_resource)

    def rungs_passed(self, prev_step, step):
        """The rungs r with prev_step < r <= step (a report may skip over rungs)."""
        out, r = [], self.min_resource
        while r <= step and (self.max_resource is None or r < self.max_resource):
            if r > prev_step:
                out.append(r)
            r *= self.eta
        return out

    def keep(self, score, scores_at_rung, mode):
        """True when ``score`` is in the top max(1, ⌊n/η⌋) of ``scores_at_rung`` (which includes
        it); ``mode`` "max" or "min"."""
        ranked = sorted(scores_at_rung, reverse=(mode == "max"))
        k = max(1, len(ranked) // self.eta)
        cutoff = ranked[k - 1]
        return score >= cutoff if mode == "max" else score <= cutoff

    def describe(self):
        return {"kind": "ASHA", "min_resource": self.min_resource, "eta": self.eta,
                "max_resource": self.max_resource}

    def __repr__(self):
        return (f"ASHA(min_resource={self.min_resource}, eta={self.eta}, "
                f"max_resource={self.max_resource})")


def check_pruner(pruner):
    if pruner is None or isinstance(pruner, ASHA):
        return pruner
    if pruner == "asha":
        return ASHA()
    raise TypeError(f"pruner={pruner!r} is invalid; expected None, 'asha' or "
                    "fd.tune.ASHA(min_resource=..., eta=...)")


# --------------------------------------------------------------------------------------------
# boards: the rung scores every worker sees

_RUNGS_SCHEMA = """
CREATE TABLE IF NOT EXISTS rungs (
    search_key TEXT NOT NULL,
    round      INTEGER NOT NULL,
    rung       INTEGER NOT NULL,
    idx        INTEGER NOT NULL,
    score      REAL NOT NULL,
    PRIMARY KEY (search_key, round, rung, idx)
)"""


class SQLiteBoard:
    """Rung scores in the ``rungs`` table of an SQLite file (WAL). Picklable: a worker process
    opens its own connection on first use."""

    def __init__(self, path, search_key, round_):
        self.path, self.search_key, self.round = str(path), search_key, int(round_)
        self._con = None

    def __getstate__(self):
        return {"path": self.path, "search_key": self.search_key, "round": self.round}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._con = None

    def for_round(self, round_):
        return SQLiteBoard(self.path, self.search_key, round_)

    def _connect(self):
        if self._con is None:
            # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE below)
            self._con = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
            self._con.execute("PRAGMA journal_mode=WAL")
            self._con.execute(_RUNGS_SCHEMA)
        return self._con

    def record(self, rung, idx, score):
        """Adds trial ``idx``'s score at ``rung`` and returns every score at that rung, read in
        the same write transaction (so two workers never both decide on a stale rung)."""
        con = self._connect()
        con.execute("BEGIN IMMEDIATE")
        try:
            con.execute("INSERT OR REPLACE INTO rungs VALUES (?, ?, ?, ?, ?)",
                        (self.search_key, self.round, int(rung), int(idx), float(score)))
            rows = con.execute("SELECT score FROM rungs WHERE search_key = ? AND round = ? "
                               "AND rung = ?", (self.search_key, self.round, int(rung))).fetchall()
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        return [r[0] for r in rows]

    def add(self, rung, idx, score):
        """Enter a score of an earlier run (resume); keeps an existing entry and its order."""
        con = self._connect()
        con.execute("INSERT OR IGNORE INTO rungs VALUES (?, ?, ?, ?, ?)",
                    (self.search_key, self.round, int(rung), int(idx), float(score)))

    def scores(self, rung):
        con = self._connect()
        rows = con.execute("SELECT score FROM rungs WHERE search_key = ? AND round = ? AND "
                           "rung = ?", (self.search_key, self.round, int(rung))).fetchall()
        return [r[0] for r in rows]

    def close(self):
        if self._con is not None:
            self._con.close()
            self._con = None


class DaskBoard:
    """Rung scores in a ``distributed.Variable`` (a JSON string ``{"round/rung": {idx: score}}``)
    on the Dask scheduler, updated under a ``distributed.Lock``: no shared file needed."""

    def __init__(self, name=None, round_=0):
        self.name = name or f"fastdl-asha-{uuid.uuid4().hex}"
        self.round = int(round_)

    def for_round(self, round_):
        return DaskBoard(self.name, round_)

    def setup(self, client, initial=None):
        from distributed import Variable
        Variable(self.name, client=client).set(json.dumps(initial or {}))

    def teardown(self, client):
        from distributed import Variable
        try:
            Variable(self.name, client=client).delete()
        except Exception:  # noqa: BLE001 - best effort: the cluster may be gone
            pass

    def record(self, rung, idx, score):
        from distributed import Lock, Variable
        with Lock(self.name + "-lock"):
            var = Variable(self.name)
            board = json.loads(var.get(timeout=60))
            at = board.setdefault(f"{self.round}/{int(rung)}", {})
            at[str(int(idx))] = float(score)
            var.set(json.dumps(board))
        return list(at.values())

    def add(self, rung, idx, score):
        """Enter a score of an earlier run (resume)."""
        self.record(rung, idx, score)

    def scores(self, rung):
        from distributed import Variable
        board = json.loads(Variable(self.name).get(timeout=60))
        return list(board.get(f"{self.round}/{int(rung)}", {}).values())

    def close(self):
        pass


def is_finite_real(x):
    return not isinstance(x, bool) and isinstance(x, numbers.Real) and math.isfinite(x)
