"""Data pipeline: splits, label encoding, mini-batches in memory and out of core, built-in
datasets on disk, progress output, learning-rate scheduler and History.plot."""

import io
import os
import threading

import numpy as np
import pytest

import fastdl as fd
from fastdl import config
from fastdl.data.batches import ArraySource, StreamSource, batch_sizes, epoch_order, stream_order
from fastdl.train.progress import EpochLine, ProgressBar, make_progress


# =========================================================================== splits
def test_split_ratios_give_exact_sizes_and_partition_the_rows():
    X = np.arange(1000.0).reshape(-1, 1)
    y = np.arange(1000) % 3
    tr, dev, te = fd.data.split(X, y, ratios=(0.8, 0.1, 0.1), seed=0)
    assert [p[0].shape[0] for p in (tr, dev, te)] == [800, 100, 100]
    rows = np.concatenate([p[0][:, 0] for p in (tr, dev, te)])
    np.testing.assert_array_equal(np.sort(rows), X[:, 0])          # disjoint and complete
    for Xp, yp in (tr, dev, te):                                   # rows keep their labels
        np.testing.assert_array_equal(yp, Xp[:, 0].astype(int) % 3)


def test_split_default_is_the_course_big_data_split():
    X, y = np.zeros((10000, 2)), np.arange(10000) % 2
    parts = fd.data.split(X, y)
    assert [p[0].shape[0] for p in parts] == [9800, 100, 100]


def test_split_stratified_keeps_class_proportions_in_every_part():
    y = np.r_[np.zeros(900, int), np.ones(90, int), np.full(10, 2)]   # 90% / 9% / 1%
    X = np.arange(1000.0).reshape(-1, 1)
    parts = fd.data.split(X, y, ratios=(0.8, 0.1, 0.1), stratify=True, seed=1)
    assert [np.bincount(p[1], minlength=3).tolist() for p in parts] == \
        [[720, 72, 8], [90, 9, 1], [90, 9, 1]]


def test_split_stratified_rounds_by_largest_remainder_with_exact_part_sizes():
    y = np.r_[np.zeros(7, int), np.ones(6, int)]
    parts = fd.data.split(np.zeros((13, 1)), y, ratios=(0.6, 0.2, 0.2), seed=0)
    sizes = [p[1].shape[0] for p in parts]
    assert sizes == [9, 2, 2]
    for p in parts[1:]:                                     # one of each class in dev / test
        assert sorted(p[1].tolist()) == [0, 1]


def test_split_stratifies_one_hot_labels():
    y = np.r_[np.zeros(950, int), np.ones(50, int)]
    X = np.arange(1000.0).reshape(-1, 1)
    parts = fd.data.split(X, fd.data.one_hot(y), ratios=(0.5, 0.25, 0.25), seed=0)
    for (Xp, Yp), n in zip(parts, (500, 250, 250)):
        assert Xp.shape[0] == n and abs(Yp[:, 1].sum() - 0.05 * n) <= 1
        np.testing.assert_array_equal(Yp.argmax(1), y[Xp[:, 0].astype(int)])


def test_split_counts_and_seed():
    X, y = np.arange(100.0).reshape(-1, 1), np.arange(100) % 2
    a = fd.data.split(X, y, counts=(50, 20, 10), seed=3)
    assert [p[0].shape[0] for p in a] == [50, 20, 10]
    b = fd.data.split(X, y, counts=(50, 20, 10), seed=3)
    c = fd.data.split(X, y, counts=(50, 20, 10), seed=4)
    np.testing.assert_array_equal(a.train[0], b.train[0])
    assert not np.array_equal(a.train[0], c.train[0])
    # integer ratios summing to more than 1 are counts as well
    d = fd.data.split(X, y, ratios=(50, 20, 10), seed=3)
    np.testing.assert_array_equal(a.dev[0], d.dev[0])


def test_split_two_ratios_leave_test_empty_and_tiny_parts_are_never_empty():
    X, y = np.arange(10.0).reshape(-1, 1), np.arange(10) % 2
    tr, dev, te = fd.data.split(X, y, ratios=(0.9, 0.1))
    assert (tr[0].shape[0], dev[0].shape[0], te[0].shape[0]) == (9, 1, 0)
    tr, dev, te = fd.data.split(X[:3], y[:3], ratios=(0.98, 0.01, 0.01))
    assert [p[0].shape[0] for p in (tr, dev, te)] == [1, 1, 1]


def test_split_regression_targets_are_not_stratified():
    X = np.arange(20.0).reshape(-1, 1)
    y = np.linspace(0, 1, 20) + 0.01                       # real values
    tr, dev, te = fd.data.split(X, y, ratios=(0.5, 0.25, 0.25), seed=0)
    assert [p[0].shape[0] for p in (tr, dev, te)] == [10, 5, 5]
    np.testing.assert_array_equal(tr[1], y[tr[0][:, 0].astype(int)])


@pytest.mark.parametrize("kwargs, match", [
    (dict(ratios=(0.9, -0.1, 0.2)), "non-negative"),
    (dict(ratios=(0.5, 0.3, 0.1)), "sum to 0.9"),
    (dict(ratios=(0.5, 0.6)), "sum to 1.1"),
    (dict(ratios=(1.0,)), "2 or 3 entries"),
    (dict(ratios=(0.25, 0.25, 0.25, 0.25)), "2 or 3 entries"),
    (dict(ratios="abc"), "2 or 3 entries"),
    (dict(ratios=(0.5, float("nan"), 0.5)), "non-negative"),
    (dict(counts=(5, -1, 1)), ">= 0"),
    (dict(counts=(5, 5, 5)), "only 10"),
    (dict(counts=(5.0, 1, 1)), "integers"),
    (dict(ratios=(0.8, 0.2), counts=(8, 2)), "not both"),
    (dict(seed=-1), "seed"),
])
def test_split_bad_arguments(kwargs, match):
    X, y = np.zeros((10, 2)), np.arange(10) % 2
    with pytest.raises(ValueError, match=match):
        fd.data.split(X, y, **kwargs)


def test_split_fewer_rows_than_parts():
    with pytest.raises(ValueError, match="cannot split 2 example"):
        fd.data.split(np.zeros((2, 1)), np.array([0, 1]), ratios=(0.8, 0.1, 0.1))
    with pytest.raises(ValueError, match="rows but y has"):
        fd.data.split(np.zeros((4, 1)), np.array([0, 1, 1]))


# =========================================================================== one-hot
def test_one_hot_round_trip_and_width():
    y = np.array([2, 0, 1, 2])
    Y = fd.data.one_hot(y)
    np.testing.assert_array_equal(Y, [[0, 0, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1]])
    np.testing.assert_array_equal(fd.data.from_one_hot(Y), y)
    assert fd.data.one_hot(y, n_classes=5).shape == (4, 5)
    np.testing.assert_array_equal(fd.data.from_one_hot([[0.2, 0.7, 0.1]]), [1])


@pytest.mark.parametrize("y, kw, match", [
    ([0, -1], {}, "non-negative integer"),
    ([0.5, 1], {}, "non-negative integer"),
    ([[0, 1]], {}, "non-negative integer"),
    ([0, 3], {"n_classes": 3}, "label 3 but n_classes=3"),
])
def test_one_hot_errors(y, kw, match):
    with pytest.raises(ValueError, match=match):
        fd.data.one_hot(np.array(y), **kw)


def test_from_one_hot_needs_2d():
    with pytest.raises(ValueError, match=r"expected \(m, C\)"):
        fd.data.from_one_hot(np.array([0, 1]))


# =========================================================================== batches, in memory
def test_batch_sizes_and_drop_last():
    np.testing.assert_array_equal(batch_sizes(10, 4), [4, 4, 2])
    np.testing.assert_array_equal(batch_sizes(10, 4, drop_last=True), [4, 4])
    np.testing.assert_array_equal(batch_sizes(3, 8, drop_last=True), [3])
    np.testing.assert_array_equal(batch_sizes(8, 4, drop_last=True), [4, 4])


def _id_net(input_dim=1, seed=0, dtype="float64"):
    return fd.Sequential([fd.Dense(2, activation="relu"), fd.Dense(1, activation="sigmoid")],
                         input_dim=input_dim, seed=seed, dtype=dtype)


def _rows_seen(source, model, seed, epoch, bs, drop_last=False, shuffle=True):
    seen = []
    for b, ws, mb in source.batches(model, seed, epoch, bs, shuffle, drop_last):
        seen.append(np.asarray(ws.Xb[:mb, 0]).copy())
    return np.concatenate(seen).astype(np.int64)


def test_array_source_sees_every_example_once_in_the_epoch_order():
    m = 103
    model = _id_net()
    X = np.arange(m, dtype=np.float64).reshape(-1, 1)
    src = ArraySource(X, np.zeros((m, 1)), model._bk)
    for epoch in range(3):
        seen = _rows_seen(src, model, 7, epoch, 16)
        np.testing.assert_array_equal(seen, epoch_order(7, epoch, m))
        assert sorted(seen.tolist()) == list(range(m))
    assert not np.array_equal(_rows_seen(src, model, 7, 0, 16), _rows_seen(src, model, 7, 1, 16))
    np.testing.assert_array_equal(_rows_seen(src, model, 7, 0, 16, shuffle=False), np.arange(m))
    assert _rows_seen(src, model, 7, 0, 16, drop_last=True).shape[0] == 96


def test_in_memory_fit_equals_the_batch_by_batch_definition():
    """The step path: epoch_order(seed, epoch) batches, one update each (train_on_batch)."""
    X, y = fd.data.make_moons(150, seed=1)
    kw = dict(input_dim=2, seed=4, dtype="float32")
    layers = lambda: [fd.Dense(80, activation="tanh"), fd.Dense(60, activation="relu"),
                      fd.Dense(1, activation="sigmoid")]             # too big for fused path
    a, b = fd.Sequential(layers(), **kw), fd.Sequential(layers(), **kw)
    a.fit(X, y, optimizer=fd.optim.Adam(lr=0.01), epochs=3, batch_size=32, l2=0.1, verbose=0)
    opt = fd.optim.Adam(lr=0.01)
    Xc = X.astype(np.float32)
    for epoch in range(3):
        order = epoch_order(4, epoch, 150)
        for s in range(0, 150, 32):
            idx = order[s:s + 32]
            b.train_on_batch(Xc[idx], y[idx], opt, l2=0.1)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


class _BatchSizes(fd.Callback):
    def __init__(self):
        self.sizes = []

    def on_batch_end(self, batch, logs=None):
        self.sizes.append(logs["size"])


def test_fit_drop_last_skips_the_partial_batch_and_weights_the_epoch_cost():
    X, y = fd.data.make_moons(100, seed=0)
    rec = _BatchSizes()
    hist = _id_net(2).fit(X, y, epochs=2, batch_size=32, drop_last=True, callbacks=[rec],
                          verbose=0)
    assert rec.sizes == [32, 32, 32] * 2
    rec = _BatchSizes()
    _id_net(2).fit(X, y, epochs=1, batch_size=32, callbacks=[rec], verbose=0)
    assert rec.sizes == [32, 32, 32, 4]
    assert len(hist["loss"]) == 2
    # divisible sizes: drop_last changes nothing (and the fused path is still used)
    a, b = _id_net(2), _id_net(2)
    a.fit(X, y, epochs=2, batch_size=20, verbose=0)
    b.fit(X, y, epochs=2, batch_size=20, drop_last=True, verbose=0)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


# =========================================================================== out of core
@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 7 rows of 3 float64 features, 3 blocks per buffer: batches straddle."""
    monkeypatch.setattr(config, "STREAM_BLOCK_BYTES", 7 * 3 * 8)
    monkeypatch.setattr(config, "STREAM_BUFFER_BLOCKS", 3)


def _files(tmp_path, m=100, d=3, dtype=np.float64, k=2, seed=0):
    rng = np.random.default_rng(seed)
    X = np.c_[np.arange(m), rng.normal(size=(m, d - 1))].astype(dtype)   # column 0: row id
    y = rng.integers(0, k, m)
    px, py = str(tmp_path / "X.npy"), str(tmp_path / "y.npy")
    np.save(px, X)
    np.save(py, y)
    return X, y, px, py


def test_stream_source_sees_every_example_once_per_epoch(tmp_path, small_blocks):
    X, y, px, py = _files(tmp_path)
    model = _id_net(3)
    src = StreamSource(model, px, py)
    assert (src.block_rows, src.buffer_blocks, src.n_blocks) == (7, 3, 15)
    for epoch in range(3):
        seen = _rows_seen(src, model, 5, epoch, 16)
        assert sorted(seen.tolist()) == list(range(100))
        np.testing.assert_array_equal(seen, stream_order(5, epoch, 100, 7, 3))
    # a pure function of (seed, epoch); epochs differ
    np.testing.assert_array_equal(_rows_seen(src, model, 5, 1, 16), _rows_seen(src, model, 5, 1, 9))
    assert not np.array_equal(_rows_seen(src, model, 5, 0, 16), _rows_seen(src, model, 5, 1, 16))
    np.testing.assert_array_equal(_rows_seen(src, model, 5, 0, 16, shuffle=False), np.arange(100))
    assert _rows_seen(src, model, 5, 0, 16, drop_last=True).shape[0] == 96


def test_stream_labels_follow_their_rows(tmp_path, small_blocks):
    X, y, px, py = _files(tmp_path)
    model = _id_net(3)
    src = StreamSource(model, px, py)
    for b, ws, mb in src.batches(model, 0, 0, 13):
        ids = ws.Xb[:mb, 0].astype(int)
        np.testing.assert_array_equal(ws.Yb[:mb, 0], y[ids])
        np.testing.assert_array_equal(ws.Xb[:mb], X[ids])


def test_stream_order_is_shuffled_blocks_permuted_inside_buffers():
    order = stream_order(0, 0, 100, 10, 2)
    groups = [set(order[i:i + 20] // 10) for i in range(0, 100, 20)]
    assert all(len(g) == 2 for g in groups)               # each buffer: two whole blocks
    assert sorted(b for g in groups for b in g) == list(range(10))


def test_fit_from_paths_memmaps_and_y_in_memory_agree(tmp_path, small_blocks):
    X, y, px, py = _files(tmp_path, m=300)
    results = []
    for Xa, ya in ((px, py), (np.load(px, mmap_mode="r"), np.load(py, mmap_mode="r")),
                   (px, y), (np.load(px, mmap_mode="r"), y)):
        model = _id_net(3)
        hist = model.fit(Xa, ya, optimizer=fd.optim.Adam(lr=0.05), epochs=4, batch_size=16,
                         verbose=0)
        results.append(model.get_weights())
        assert hist["loss"][-1] < hist["loss"][0]
    for other in results[1:]:
        for wa, wb in zip(results[0], other):
            np.testing.assert_array_equal(wa, wb)


def test_stream_equals_in_memory_training_on_the_same_order(tmp_path, small_blocks):
    """Streaming changes only the order: fed the stream's order, in-memory steps agree."""
    X, y, px, py = _files(tmp_path, m=64)
    a, b = _id_net(3, seed=2), _id_net(3, seed=2)
    a.fit(px, py, optimizer=fd.optim.SGD(lr=0.1), epochs=2, batch_size=8, verbose=0)
    opt = fd.optim.SGD(lr=0.1)
    for epoch in range(2):
        order = stream_order(2, epoch, 64, 7, 3)
        for s in range(0, 64, 8):
            b.train_on_batch(X[order[s:s + 8]], y[order[s:s + 8]], opt)
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)


def test_stream_converts_file_dtype_and_reads_memmap_row_ranges(tmp_path, small_blocks):
    X, y, px, py = _files(tmp_path, m=200)
    p32 = str(tmp_path / "X32.npy")
    np.save(p32, X.astype(np.float32))
    model = _id_net(3, dtype="float32")
    seen = _rows_seen(StreamSource(model, px, py), model, 0, 0, 10)     # float64 file
    assert sorted(seen.tolist()) == list(range(200))
    mm = np.load(p32, mmap_mode="r")[50:130]                             # a row range
    src = StreamSource(model, mm, y[50:130])
    seen = _rows_seen(src, model, 0, 0, 10)
    assert sorted(seen.tolist()) == list(range(50, 130))


def test_stream_buffers_are_bounded_by_config(tmp_path, small_blocks):
    X, y, px, py = _files(tmp_path, m=1000)
    model = _id_net(3)
    src = StreamSource(model, px, py)
    list(src.batches(model, 0, 0, 32))
    held = sum(b.X.nbytes + b.Y.nbytes for b in src._buffers)
    assert held == 2 * 21 * (3 + 1) * 8                 # two buffers of 3 blocks of 7 rows


def test_prefetch_thread_stops_when_training_stops_midway(tmp_path, small_blocks):
    X, y, px, py = _files(tmp_path, m=500)

    class Boom(fd.Callback):
        def on_batch_end(self, batch, logs=None):
            if batch == 3:
                raise RuntimeError("boom")
    with pytest.raises(RuntimeError, match="boom"):
        _id_net(3).fit(px, py, epochs=1, batch_size=8, callbacks=[Boom()], verbose=0)
    assert not [t for t in threading.enumerate() if t.name == "fastdl-prefetch"]


# --------------------------------------------------------------------------- stream errors
def test_stream_memmap_shape_disagrees_with_y(tmp_path):
    X, y, px, py = _files(tmp_path)
    with pytest.raises(ValueError, match=r"has 100 rows but y \(in memory\) has 99"):
        _id_net(3).fit(np.load(px, mmap_mode="r"), y[:99], verbose=0)
    np.save(tmp_path / "y99.npy", y[:99])
    with pytest.raises(ValueError, match="has 100 rows but y .*has 99"):
        _id_net(3).fit(px, str(tmp_path / "y99.npy"), verbose=0)


def test_stream_feature_count_and_label_range_checked_up_front(tmp_path):
    X, y, px, py = _files(tmp_path, k=3)
    with pytest.raises(ValueError, match="has 3 features .* expects 2"):
        _id_net(2).fit(px, py, verbose=0)
    with pytest.raises(ValueError, match="binary_crossentropy expects labels in"):
        _id_net(3).fit(px, py, verbose=0)


def test_stream_missing_wrong_and_bad_files(tmp_path):
    X, y, px, py = _files(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such file"):
        _id_net(3).fit(str(tmp_path / "nope.npy"), py, verbose=0)
    with pytest.raises(ValueError, match="not a .npy file"):
        _id_net(3).fit(str(tmp_path / "X.csv"), py, verbose=0)
    (tmp_path / "junk.npy").write_bytes(b"not numpy at all")
    with pytest.raises(ValueError, match="not a readable .npy file"):
        _id_net(3).fit(str(tmp_path / "junk.npy"), py, verbose=0)
    raw = open(px, "rb").read()
    (tmp_path / "cut.npy").write_bytes(raw[:len(raw) // 2])
    with pytest.raises(ValueError, match="is truncated"):
        _id_net(3).fit(str(tmp_path / "cut.npy"), py, verbose=0)
    np.save(tmp_path / "F.npy", np.asfortranarray(X))
    with pytest.raises(ValueError, match="Fortran order"):
        _id_net(3).fit(str(tmp_path / "F.npy"), py, verbose=0)
    np.save(tmp_path / "X1.npy", X[:, 0])
    with pytest.raises(ValueError, match="expected a 2-D array"):
        _id_net(3).fit(str(tmp_path / "X1.npy"), py, verbose=0)
    with pytest.raises(ValueError, match="non-contiguous view"):
        _id_net(2).fit(np.load(px, mmap_mode="r")[:, :2], py, verbose=0)
    with pytest.raises(ValueError, match="y is None"):
        _id_net(3).fit(px, None, verbose=0)


def test_stream_nan_in_file_is_reported_with_its_rows(tmp_path, small_blocks):
    X, y, px, py = _files(tmp_path)
    X[50, 1] = np.nan
    np.save(px, X)
    with pytest.raises(ValueError, match="NaN or infinite value.* in rows 49 to 55"):
        _id_net(3).fit(px, py, verbose=0)


# =========================================================================== datasets on disk
def test_make_teacher_npy_writes_the_rows_of_make_teacher(tmp_path):
    px, py = str(tmp_path / "t.npy"), str(tmp_path / "t.labels.npy")
    out = fd.data.make_teacher_npy(px, py, n=70000, n_features=5, n_classes=3, seed=2)
    assert out == (px, py)
    X, y = fd.data.make_teacher(70000, n_features=5, n_classes=3, seed=2, dtype=np.float32)
    np.testing.assert_array_equal(np.load(px), X)
    np.testing.assert_array_equal(np.load(py), y)
    assert np.load(px, mmap_mode="r").dtype == np.float32
    assert sorted(os.listdir(tmp_path)) == ["t.labels.npy", "t.npy"]   # no .part left
    with pytest.raises(FileNotFoundError, match="does not exist"):
        fd.data.make_teacher_npy(str(tmp_path / "no" / "x.npy"), py, n=10)
    with pytest.raises(ValueError, match="float dtype"):
        fd.data.make_teacher_npy(px, py, n=10, dtype=np.int32)


def test_load_dataset_digits():
    pytest.importorskip("sklearn")
    X, y = fd.data.load_dataset("digits")
    assert X.shape == (1797, 64) and X.max() == 16.0
    assert np.bincount(y).tolist()[:3] == [178, 182, 177]
    Xs, ys = fd.data.load_dataset("digits", n=100, seed=1)
    assert Xs.shape == (100, 64)


def test_load_dataset_digits_without_sklearn(monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match="pip install scikit-learn"):
        fd.data.load_dataset("digits")


def test_load_dataset_unknown():
    with pytest.raises(ValueError, match="not a built-in dataset"):
        fd.data.load_dataset("mnist")


# =========================================================================== progress
class _TTY(io.StringIO):
    def isatty(self):
        return True


def test_progress_choice_follows_verbose_and_tty():
    assert make_progress(0) is None
    assert type(make_progress(1, io.StringIO())) is EpochLine
    assert type(make_progress(1, _TTY())) is ProgressBar
    assert type(make_progress(2, _TTY())) is EpochLine


def test_progress_bar_shows_rate_running_loss_dev_metrics_and_eta():
    out = _TTY()
    bar = ProgressBar(out, interval=0.0)
    bar.on_train_begin(0, 2)
    bar.on_epoch_begin(0, np.array([4, 4, 2]))
    for b, (n, c) in enumerate([(4, 1.0), (4, 2.0), (2, 3.0)]):
        bar.update(b, n, c)
    # while running: the batches' mean cost weighted by size, (4 + 8 + 6) / 10 = 1.8
    assert "loss: 1.8 " in out.getvalue().split("\r")[-1]
    bar.on_epoch_end(0, {"loss": 1.8, "accuracy": 0.6, "val_loss": 0.5, "val_accuracy": 0.75},
                     np.array([1.0, 2.0, 3.0]), np.array([4, 4, 2]), 0.5)
    text = out.getvalue()
    lines = text.split("\n")
    assert len(lines) == 2 and lines[1] == ""               # one finished line per epoch
    final = lines[0].split("\r")[-1]
    assert final.startswith("Epoch 1/2 [========================] 10/10 - 0.5s 20 samples/s")
    assert final.count("loss: 1.8 ") == 1 and "cost" not in final        # one cost
    assert "accuracy: 0.6" in final and "val_loss: 0.5" in final and "val_accuracy: 0.75" in final
    assert "ETA 0.5s" in final                               # one more epoch of 0.5 s
    assert "ETA" in text.split("\r")[2]                     # while running: the epoch's ETA


def test_fit_verbose_outputs(capsys):
    X, y = fd.data.make_moons(100, seed=0)
    _id_net(2).fit(X, y, epochs=3, verbose=0)
    assert capsys.readouterr().out == ""
    _id_net(2).fit(X, y, epochs=3, verbose=1, validation_data=(X, y))      # not a TTY
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[2].startswith("Epoch 3/3 - ")
    assert "samples/s" in lines[0] and "val_accuracy" in lines[0]


def test_fit_draws_the_bar_on_a_terminal(monkeypatch):
    out = _TTY()
    monkeypatch.setattr("sys.stdout", out)
    X, y = fd.data.make_teacher(600, n_features=80, seed=0)
    model = fd.Sequential([fd.Dense(64, activation="relu"), fd.Dense(1, activation="sigmoid")],
                          input_dim=80, seed=0)                # step path: per-batch updates
    model.fit(X, y, epochs=2, batch_size=50, verbose=1)
    text = out.getvalue()
    assert text.count("\n") == 2 and "\r" in text
    assert "Epoch 2/2 [========================] 600/600" in text


# =========================================================================== scheduler, plot
def test_learning_rate_scheduler_matches_lr_schedule():
    X, y = fd.data.make_moons(100, seed=0)
    sched = fd.optim.InverseTimeDecay(0.5, decay_rate=1.0)
    a, b = _id_net(2), _id_net(2)
    ha = a.fit(X, y, optimizer=fd.optim.SGD(lr=0.5), epochs=4, lr_schedule=sched, verbose=0)
    hb = b.fit(X, y, optimizer=fd.optim.SGD(lr=0.5), epochs=4, verbose=0,
               callbacks=[fd.LearningRateScheduler(sched)])
    assert hb["lr"] == pytest.approx([0.5, 0.25, 0.5 / 3, 0.125])
    assert ha["lr"] == hb["lr"]
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    hc = _id_net(2).fit(X, y, optimizer=fd.optim.SGD(lr=0.4), epochs=3, verbose=0,
                        callbacks=[fd.LearningRateScheduler(lambda epoch, lr: lr * 0.5)])
    assert hc["lr"] == pytest.approx([0.2, 0.1, 0.05])
    with pytest.raises(TypeError, match="callable"):
        fd.LearningRateScheduler(0.1)
    with pytest.raises(ValueError, match="lr="):
        _id_net(2).fit(X, y, epochs=1, verbose=0,
                       callbacks=[fd.LearningRateScheduler(lambda e: -1.0)])


def test_history_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    X, y = fd.data.make_moons(100, seed=0)
    hist = _id_net(2).fit(X, y, epochs=3, validation_data=(X, y), verbose=0)
    path = hist.plot(str(tmp_path / "curves.png"))
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="was not recorded"):
        hist.plot(str(tmp_path / "c.png"), metric="f1")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        hist.plot(str(tmp_path / "no" / "c.png"))
    with pytest.raises(ValueError, match="History is empty"):
        fd.History().plot(str(tmp_path / "e.png"))


def test_history_plot_without_matplotlib_names_the_extra(monkeypatch, tmp_path):
    import sys
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    hist = fd.History()
    hist.on_epoch_end(0, {"loss": 1.0})
    with pytest.raises(ImportError, match=r"fastdl\[plot\]"):
        hist.plot(str(tmp_path / "c.png"))


def test_stream_reads_without_preadv(tmp_path, small_blocks, monkeypatch):
    """The fallback reader (no os.preadv, e.g. Windows) gives the same batches."""
    X, y, px, py = _files(tmp_path)
    model = _id_net(3)
    want = _rows_seen(StreamSource(model, px, py), model, 3, 0, 16)
    monkeypatch.delattr(os, "preadv")
    np.testing.assert_array_equal(_rows_seen(StreamSource(model, px, py), model, 3, 0, 16), want)
    monkeypatch.delattr(os, "pread")
    np.testing.assert_array_equal(_rows_seen(StreamSource(model, px, py), model, 3, 0, 16), want)
