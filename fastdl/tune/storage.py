"""SQLite trial store (stdlib ``sqlite3``, WAL journal): one row per finished trial (status "ok",
"pruned" or "failed"), written as it completes, keyed by a search key (a hash of the search's kind,
seed, space and settings), the round and the trial index; its per-epoch reports (``trial.report``)
go to the ``reports`` table, one row per (trial, step). Rerunning the same search on the same file
skips every stored trial. ASHA's rung scores live in the ``rungs`` table (``pruning.py``).

    SELECT idx, status, score FROM trials;  SELECT step, score FROM reports WHERE idx = 3;
"""

from __future__ import annotations

import json
import sqlite3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS trials (
    search_key TEXT NOT NULL,
    round      INTEGER NOT NULL,
    idx        INTEGER NOT NULL,
    config     TEXT NOT NULL,
    score      REAL,
    status     TEXT NOT NULL,
    error      TEXT,
    duration   REAL,
    PRIMARY KEY (search_key, round, idx)
);
CREATE TABLE IF NOT EXISTS reports (
    search_key TEXT NOT NULL,
    round      INTEGER NOT NULL,
    idx        INTEGER NOT NULL,
    step       INTEGER NOT NULL,
    score      REAL NOT NULL,
    PRIMARY KEY (search_key, round, idx, step)
)"""


class TrialStore:
    def __init__(self, path):
        self.path = str(path)
        try:
            self._con = sqlite3.connect(self.path, timeout=30.0)
            self._con.execute("PRAGMA journal_mode=WAL")
            self._con.executescript(_SCHEMA)
            self._con.commit()
        except sqlite3.DatabaseError as e:
            raise ValueError(f"storage={path!r} cannot be used as an SQLite trial store: {e}") from None

    def load(self, search_key, round_):
        rows = self._con.execute(
            "SELECT idx, config, score, status, error, duration FROM trials "
            "WHERE search_key = ? AND round = ?", (search_key, round_)).fetchall()
        reports = {}
        for idx, step, score in self._con.execute(
                "SELECT idx, step, score FROM reports WHERE search_key = ? AND round = ? "
                "ORDER BY idx, step", (search_key, round_)):
            reports.setdefault(idx, []).append((step, score))
        return {idx: {"index": idx, "round": round_, "config": json.loads(cfg), "score": score,
                      "status": status, "error": error, "duration": dur,
                      "reports": reports.get(idx, [])}
                for idx, cfg, score, status, error, dur in rows}

    def save(self, search_key, trial):
        with self._con:
            self._con.execute(
                "INSERT OR REPLACE INTO trials VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (search_key, trial["round"], trial["index"], json.dumps(trial["config"]),
                 trial["score"], trial["status"], trial["error"], trial["duration"]))
            self._con.execute("DELETE FROM reports WHERE search_key = ? AND round = ? AND idx = ?",
                              (search_key, trial["round"], trial["index"]))
            self._con.executemany(
                "INSERT INTO reports VALUES (?, ?, ?, ?, ?)",
                [(search_key, trial["round"], trial["index"], int(st), float(sc))
                 for st, sc in trial.get("reports", ())])

    def close(self):
        self._con.close()
