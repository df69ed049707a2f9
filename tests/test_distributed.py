"""Data-parallel training (fastdl.distributed) under ``mpiexec -n 2`` on localhost.

The rank script is tests/mpi/dp_checks.py; each launch imports numba in every rank, so the
checks share launches: one for equivalence / broadcast / checkpoint / streaming / dropout /
batch norm, one per fault, one single-rank resume. The pure-Python parts (sharding rule,
argument errors, synchronized batch norm over one rank) are tested in process.
"""

import os
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

import fastdl as fd
from fastdl.data.batches import ArraySource, batch_sizes
from fastdl.distributed import DataParallel, shard_range
from fastdl.distributed.comm import timeout_from_env
from fastdl.distributed.sharding import ShardedArraySource, shard_rows
from fastdl.distributed.trainer import _mix_seed, resolve

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "mpi", "dp_checks.py")
REPO = os.path.dirname(HERE)
#: the timeout of the stalled-rank test, and how much later than it the job must be over
FAULT_TIMEOUT, FAULT_SLACK = 3.0, 20.0


def rel(a, b):
    return float(np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max())


# ====================================================================== in process, no MPI
def test_shard_range_splits_every_batch_like_array_split():
    for mb in (1, 2, 7, 128, 255, 256):
        for size in (1, 2, 3, 8):
            parts = [shard_range(mb, size, r) for r in range(size)]
            want = [len(a) for a in np.array_split(np.arange(mb), size)]
            assert [n for _, n in parts] == want
            assert [s for s, _ in parts] == list(np.cumsum([0] + want[:-1]))


def test_sharded_source_batches_union_is_the_one_process_batch():
    model = fd.Sequential([fd.Dense(1, activation="sigmoid")], input_dim=3, dtype="float64",
                          seed=0, backend="numpy")
    X = np.arange(31 * 3, dtype=np.float64).reshape(31, 3)
    y = (np.arange(31) % 2).astype(np.float64)
    src = ArraySource(*model._XY(X, y), model._bk)
    whole = [ws.Xb.copy() for _, ws, _ in src.batches(model, 5, 2, 8)]
    got = [[], [], []]
    for r in range(3):
        for b, ws, mb in ShardedArraySource(src, 3, r).batches(model, 5, 2, 8):
            assert mb == batch_sizes(31, 8)[b]
            got[r].append(ws.Xb.copy() if ws.m else np.empty((0, 3)))
    for b, full in enumerate(whole):
        np.testing.assert_array_equal(np.concatenate([got[r][b] for r in range(3)]), full)
    rows, local = shard_rows(np.arange(31), batch_sizes(31, 8), 8, 3, 2)
    assert local.tolist() == [2, 2, 2, 2] and rows.tolist() == [6, 7, 14, 15, 22, 23, 29, 30]


def test_arguments_are_checked():
    with pytest.raises(TypeError, match="distributed='yes' is invalid"):
        resolve("yes")
    assert resolve(False) is None and isinstance(resolve(True), DataParallel)
    with pytest.raises(ValueError, match="timeout=0 is invalid"):
        DataParallel(timeout=0)
    with pytest.raises(TypeError, match="sync='yes' is invalid"):
        fd.BatchNorm(sync="yes")
    assert timeout_from_env(7) == 7.0


def test_rank_seed_mix_keeps_rank_0_and_differs_per_rank():
    seeds = {_mix_seed(3, r) for r in range(1, 9)}
    assert len(seeds) == 8 and 3 not in seeds and all(0 <= s < 2**63 for s in seeds)


def test_sync_batchnorm_is_saved_and_loaded(tmp_path):
    model = fd.Sequential([fd.Dense(4), fd.BatchNorm(sync=True), fd.Activation("relu"),
                           fd.Dense(1, activation="sigmoid")], input_dim=2, seed=0)
    model.save(str(tmp_path / "m.npz"))
    assert fd.load(str(tmp_path / "m.npz")).layers[1].sync is True
    assert "sync" not in fd.BatchNorm().get_config()


# ====================================================================== under mpiexec
def _mpiexec():
    pytest.importorskip("mpi4py")
    here = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    exe = here if os.path.exists(here) else shutil.which("mpiexec")
    if exe is None:
        pytest.skip("no mpiexec (pip install 'fastdl[mpi]' installs MPICH's)")
    return exe


def launch(outdir, checks, n=2, env=None, timeout=120):
    """Run dp_checks.py under mpiexec -n n (n=None: one plain process, a singleton rank)."""
    full = dict(os.environ, NUMBA_NUM_THREADS="1", OMP_NUM_THREADS="1",
                OPENBLAS_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
                    [REPO] + ([os.environ["PYTHONPATH"]] if "PYTHONPATH" in os.environ
                              else [])), **(env or {}))
    cmd = [sys.executable, SCRIPT, str(outdir), *checks]
    if n is not None:
        cmd = [_mpiexec(), "-n", str(n)] + cmd
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=full)
    return proc, time.monotonic() - t0


def load(outdir, check, rank):
    return np.load(os.path.join(outdir, f"{check}_rank{rank}.npz"))


@pytest.fixture(scope="module")
def checks(tmp_path_factory):
    out = tmp_path_factory.mktemp("dp")
    proc, _ = launch(out, ["equivalence", "broadcast", "stream", "dropout", "batchnorm"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


@pytest.mark.parametrize("opt", ["sgd", "adam", "numpy"])      # numpy: the reference backend
def test_two_ranks_equal_one_process_on_the_same_global_batches(checks, opt):
    for r in (0, 1):
        e = load(checks, "equivalence", r)
        assert rel(e[f"{opt}_params"], e[f"{opt}_ref"]) <= 1e-12
        assert rel(e[f"{opt}_loss"], e[f"{opt}_loss_ref"]) <= 1e-12     # global batch loss
        assert rel(e[f"{opt}_val"], e[f"{opt}_val_ref"]) <= 1e-12       # validation
        assert e[f"{opt}_steps"].tolist() == [12, 12]                   # 4 batches x 3 epochs
    np.testing.assert_array_equal(load(checks, "equivalence", 0)[f"{opt}_params"],
                                  load(checks, "equivalence", 1)[f"{opt}_params"])


def test_only_rank_0_writes_checkpoints(checks):
    for opt in ("sgd", "adam", "numpy"):
        assert not os.path.exists(os.path.join(checks, f"ck_{opt}_rank1.npz"))
        m = fd.load(os.path.join(checks, f"ck_{opt}_rank0.npz"))
        assert m.epochs_trained == 3
        np.testing.assert_array_equal(m.params.snapshot(),
                                      load(checks, "equivalence", 0)[f"{opt}_params"])


def test_rank_0_initial_parameters_seed_and_standardizer_are_broadcast(checks):
    b0, b1 = load(checks, "broadcast", 0), load(checks, "broadcast", 1)
    assert rel(b1["before"], b0["before"]) > 0.1                # rank 1 started elsewhere
    np.testing.assert_array_equal(b1["after"], b0["before"])
    np.testing.assert_array_equal(b0["after"], b0["before"])
    assert b0["seed"][0] == b1["seed"][0] == 10
    np.testing.assert_array_equal(b1["mean"], b0["own_mean"])   # fitted on rank 0's X
    assert np.abs(b1["own_mean"] - b0["own_mean"]).min() > 0.5


def test_streamed_ranks_read_only_their_rows_and_match_one_process(checks):
    s0, s1 = load(checks, "stream", 0), load(checks, "stream", 1)
    for s in (s0, s1):
        assert rel(s["params"], s["ref"]) <= 1e-12
    # 700 rows, 2 epochs, global batches of 99 split 50/49 and a last one of 7 split 4/3
    assert s0["rows_read"][0] == 2 * (7 * 50 + 4) and s1["rows_read"][0] == 2 * (7 * 49 + 3)


def test_dropout_masks_differ_per_rank(checks):
    for r in (0, 1):
        d = load(checks, "dropout", r)
        assert rel(d["got"], d["expected"]) <= 1e-12
        assert rel(d["got"], d["same_masks"]) > 1e-3


def test_batchnorm_per_rank_statistics_and_sync_option(checks):
    for r in (0, 1):
        q = load(checks, "batchnorm", r)
        assert rel(q["got"], q["expected"]) <= 1e-12          # each half its own statistics
        assert rel(q["running"], q["running_half0"]) <= 1e-12  # rank 0's running statistics
        assert rel(q["sync"], q["sync_ref"]) <= 1e-12         # synchronized = one process


def test_killed_rank_stops_the_job_and_the_checkpoint_resumes_on_one_rank(tmp_path):
    proc, elapsed = launch(tmp_path, ["fault"], timeout=120)
    assert proc.returncode != 0
    assert elapsed < FAULT_SLACK
    assert "Killed (signal 9)" in proc.stdout + proc.stderr         # mpiexec's report
    ck = fd.load(os.path.join(tmp_path, "fault_ck.npz"))            # intact: epoch 2's
    assert ck.epochs_trained == 2
    proc, _ = launch(tmp_path, ["resume"], n=None)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    r = load(tmp_path, "resume", 0)
    assert r["epochs"].tolist() == [4, 4, 1]
    assert rel(r["params"], r["ref"]) <= 1e-12


def test_stalled_rank_gives_a_clear_error_within_the_timeout(tmp_path):
    proc, elapsed = launch(tmp_path, ["fault"], timeout=120,
                           env={"FAULT": "stop", "FASTDL_DIST_TIMEOUT": str(FAULT_TIMEOUT)})
    err = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "fastdl.distributed: rank 0 of 2 failed: " in err
    assert "DistributedError: rank 0 of 2: gradient allreduce at step 9 did not complete " \
           f"within {FAULT_TIMEOUT:g} s" in err
    assert FAULT_TIMEOUT <= elapsed < FAULT_TIMEOUT + FAULT_SLACK
    assert fd.load(os.path.join(tmp_path, "fault_ck.npz")).epochs_trained == 2


def test_error_on_one_rank_aborts_every_rank_at_once(tmp_path):
    proc, elapsed = launch(tmp_path, ["error"], timeout=120,
                           env={"FASTDL_DIST_TIMEOUT": "600"})     # not the timeout's doing
    err = proc.stdout + proc.stderr
    assert proc.returncode != 0 and elapsed < FAULT_SLACK
    assert "fastdl.distributed: rank 1 of 2 failed: OSError: the disk of host 2 is gone" in err
    assert "aborting all ranks (MPI_Abort)" in err


def test_preemption_stops_every_rank_after_the_same_step_and_resumes_bit_for_bit(tmp_path):
    """SIGTERM to rank 1 only (tests/mpi/dp_checks.py, check_preempt): both ranks raise
    fd.Preempted after the same step, only rank 0 writes, a 2-rank resume equals the unbroken
    2-rank run exactly (in memory and streamed)."""
    proc, _ = launch(tmp_path, ["preempt"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    p0, p1 = load(tmp_path, "preempt", 0), load(tmp_path, "preempt", 1)
    for name, at in (("memory", 6), ("stream", 9)):
        # flag set after step `at` on rank 1 -> rides in step at+1's allreduce -> all stop
        for p in (p0, p1):
            assert p[f"{name}_stop"].tolist() == [at + 1, (at + 1) // 4, (at + 1) % 4]
            assert p[f"{name}_steps"].tolist() == [at + 1, 16, 16]
            np.testing.assert_array_equal(p[f"{name}_resumed"], p[f"{name}_ref"])
            np.testing.assert_array_equal(p[f"{name}_loss"], p[f"{name}_loss_ref"])
        np.testing.assert_array_equal(p0[f"{name}_resumed"], p1[f"{name}_resumed"])
        assert os.path.exists(os.path.join(tmp_path, f"{name}_ck_rank0.npz"))
        assert not os.path.exists(os.path.join(tmp_path, f"{name}_ck_rank1.npz"))


def test_cli_train_distributed_prints_once_and_matches_one_process(tmp_path):
    args = ["train", "--dataset", "moons", "--n", "600", "--epochs", "3", "--batch-size",
            "64", "--dtype", "float64", "--verbose", "2", "--layers", "16,8"]
    env = dict(os.environ, NUMBA_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
        [REPO] + ([os.environ["PYTHONPATH"]] if "PYTHONPATH" in os.environ else [])))
    two = subprocess.run([_mpiexec(), "-n", "2", sys.executable, "-m", "fastdl", *args,
                          "--distributed", "-o", str(tmp_path / "two.npz"), "--checkpoint",
                          str(tmp_path / "ck.npz")], capture_output=True, text=True, env=env,
                         timeout=120)
    assert two.returncode == 0, two.stdout + two.stderr
    assert two.stdout.count("trained 3 epochs") == 1            # rank 0 prints, rank 1 not
    assert two.stdout.count("Epoch 3/3") == 1
    one = subprocess.run([sys.executable, "-m", "fastdl", *args, "-o", str(tmp_path / "one.npz")],
                         capture_output=True, text=True, env=env, timeout=120)
    assert one.returncode == 0, one.stdout + one.stderr
    a, b = fd.load(str(tmp_path / "two.npz")), fd.load(str(tmp_path / "one.npz"))
    assert rel(a.params.snapshot(), b.params.snapshot()) <= 1e-12
    assert fd.load(str(tmp_path / "ck.npz")).epochs_trained == 3
