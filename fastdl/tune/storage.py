"""SQLite trial store (stdlib ``sqlite3``, WAL journal): one row per finished trial, written as it
completes, keyed by a search key (a hash of the search's kind, seed, space and settings), the round
and the trial index. Rerunning the same search on the same file skips every stored trial."""

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
)"""


class TrialStore:
    def __init__(self, path):
        self.path = str(path)
        try:
            self._con = sqlite3.connect(self.path, timeout=30.0)
            self._con.execute("PRAGMA journal_mode=WAL")
            self._con.execute(_SCHEMA)
            self._con.commit()
        except sqlite3.DatabaseError as e:
            raise ValueError(f"storage={path!r} cannot be used as an SQLite trial store: {e}") from None

    def load(self, search_key, round_):
        rows = self._con.execute(
            "SELECT idx, config, score, status, error, duration FROM trials "
            "WHERE search_key = ? AND round = ?", (search_key, round_)).fetchall()
        return {idx: {"index": idx, "round": round_, "config": json.loads(cfg), "score": score,
                      "status": status, "error": error, "duration": dur}
                for idx, cfg, score, status, error, dur in rows}

    def save(self, search_key, trial):
        with self._con:
            self._con.execute(
                "INSERT OR REPLACE INTO trials VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (search_key, trial["round"], trial["index"], json.dumps(trial["config"]),
                 trial["score"], trial["status"], trial["error"], trial["duration"]))

    def close(self):
        self._con.close()
