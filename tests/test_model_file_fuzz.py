"""Damaged model and checkpoint files (issue 18), fuzzed: the only allowed outcomes are
``fd.ModelFileError`` naming the file, or a model that predicts exactly what the original
does, through ``fd.load``, ``fit(..., resume_from=path)`` and ``fastdl evaluate``; and no
damaged file runs code (the pickle payloads below would set ``RAN``).

The damages, all from seeded generators (``SEED``):
* whole file: byte flips and truncations anywhere (plus every zip structure boundary),
  bytes prepended or appended, empty files, text, a single .npy;
* archive: members deflated (valid), bzip2 / lzma, an encrypted flag, forged sizes in the
  central directory, overlapping members, a name twice, an empty archive;
* members: each one dropped; extra members; each one replaced by non-.npy bytes, a pickle,
  object arrays, truncated or over-long .npy data, broken, forged or over-long headers, huge
  declared shapes, non-plain dtypes, strings, other dtypes and shapes, big-endian data,
  NaN / inf, values out of their declared range; the JSON members additionally by invalid
  JSON, JSON nested 100k deep, other top-level types, every leaf given another type, every
  key deleted and an extra key in every object.

The fixtures cover every member the schema declares (``test_every_declared_member_is_in_a_
fixture``), so declaring a member in ``fastdl/model_schema.py`` and writing it in a fixture
puts it under every damage here. Replacements are invalid by construction: a damage that
leaves a valid file of different values (a weight changed to another finite number) cannot be
detected by any reader and is not generated.
"""

import contextlib
import io
import json
import pickle
import struct
import warnings
import zipfile

import numpy as np
import pytest

import fastdl as fd
import fastdl.io as fio
from fastdl import cli
from fastdl.model_schema import MEMBERS

SEED = 18
RAN = []        # set by Payload.__reduce__'s call if a damaged file were ever unpickled


def _ran(*args):
    RAN.append(args)


class Payload:
    """Unpickling this calls ``_ran``: proof that code ran."""

    def __reduce__(self):
        return (_ran, ("pickle payload executed",))


# =============================================================================== fixtures
def every_layer_net(seed=0, dtype="float32"):
    return fd.Sequential([fd.Dense(16, init="he"), fd.BatchNorm(), fd.Activation("relu"),
                          fd.Dropout(keep_prob=0.8),
                          fd.Dense(8, activation="tanh", use_bias=False),
                          fd.Dense(3, activation="softmax")],
                         input_dim=2, seed=seed, dtype=dtype)


def spirals():
    X, y = fd.data.make_spirals(300, seed=0)
    return X * 5 + 3, y          # off-center, so the standardizer matters


CKPT_EPOCHS = 2


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    """name -> (path, X, reference predict_proba). ``checkpoint``: Dense, BatchNorm,
    Activation, Dropout, a Standardizer and Adam's state, written by ModelCheckpoint;
    ``momentum64``: float64, Momentum with text and bool hyperparameters and clipping on;
    ``untrained``: model.save before any fit (no optimizer, counters at 0, no history), with
    a standardizer fitted by hand; ``midepoch``: a ModelCheckpoint(every_n_steps=...) file
    written inside an epoch, with the position and every callback state a checkpoint holds."""
    d = tmp_path_factory.mktemp("fixtures")
    X, y = spirals()
    out = {}

    m = every_layer_net(seed=7)
    m.standardizer = fd.Standardizer()
    path = str(d / "checkpoint.npz")
    m.fit(X, y, optimizer=fd.optim.Adam(lr=0.01), epochs=CKPT_EPOCHS, batch_size=32,
          verbose=0, callbacks=[fd.ModelCheckpoint(path, monitor="loss")])
    out["checkpoint"] = (path, X, m.predict_proba(X))

    Xm, ym = fd.data.make_moons(200, seed=1)
    m = fd.Sequential([fd.Dense(6, activation="relu"), fd.Dense(1, activation="sigmoid")],
                      input_dim=2, seed=3, dtype="float64")
    m.fit(Xm, ym, optimizer=fd.optim.Momentum(lr=0.05, nesterov=True, form="pytorch",
                                              global_clipnorm=1.0, clipvalue=0.5),
          epochs=2, batch_size=50, verbose=0)
    path = str(d / "momentum64.npz")
    m.save(path)
    out["momentum64"] = (path, Xm, m.predict_proba(Xm))

    m = every_layer_net(seed=1)
    m.standardizer = fd.Standardizer().fit(X)
    path = str(d / "untrained.npz")
    m.save(path)
    out["untrained"] = (path, X, m.predict_proba(X))

    # written inside epoch 3 (after batch 8 of 10) with every callback whose state a
    # checkpoint holds (issue 19): position/*, callback/<Class>/0/state, EarlyStopping's best
    # weights; the prediction is the model's at that step
    m = every_layer_net(seed=5)
    m.standardizer = fd.Standardizer()
    snap = {}

    class Snapshot(fd.Callback):
        def on_batch_end(self, batch, logs=None):
            if self.model.steps_trained == 28:
                snap["proba"] = self.model.predict_proba(X)
    m.fit(X, y, optimizer=fd.optim.Adam(lr=0.01), epochs=3, batch_size=32, verbose=0,
          callbacks=[Snapshot(), fd.EarlyStopping(monitor="loss", patience=5),
                     fd.LearningRateScheduler(lambda e, lr: lr * 0.5 if e else lr),
                     fd.GradientMonitor(every=3, verbose=0),
                     fd.ModelCheckpoint(str(d / "midepoch-{step}.npz"), every_n_steps=7,
                                        keep=3)])
    path = str(d / "midepoch-28.npz")
    out["midepoch"] = (path, X, snap["proba"])
    return out


def members_of(path):
    with zipfile.ZipFile(path) as z:
        return [(i.filename, z.read(i)) for i in z.infolist()]


def zip_bytes(members, compression=zipfile.ZIP_STORED):
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")          # "Duplicate name" is a damage we want
        with zipfile.ZipFile(buf, "w", compression) as z:
            for name, data in members:
                z.writestr(zipfile.ZipInfo(name, (2026, 12, 3, 0, 0, 0)), data,
                           compress_type=compression)
    return buf.getvalue()


# =============================================================================== damages
def npy(a, allow_pickle=False):
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=allow_pickle)
    return buf.getvalue()


def npy_header(descr, shape, fortran=False, version=1):
    buf = io.BytesIO()
    d = {"descr": descr, "fortran_order": fortran, "shape": shape}
    (np.lib.format.write_array_header_1_0 if version == 1
     else np.lib.format.write_array_header_2_0)(buf, d)
    return buf.getvalue()


def npy_data(raw):
    """The data bytes of a .npy member (what follows its header)."""
    f = io.BytesIO(raw)
    version = np.lib.format.read_magic(f)
    (np.lib.format.read_array_header_1_0 if version == (1, 0)
     else np.lib.format.read_array_header_2_0)(f)
    return raw[f.tell():]


def json_mutations(value, rng):
    """(label, value) pairs: every leaf given another JSON type (one drawn at random), every
    key deleted, an extra key in every object. Never a value of the same type (that could be
    a valid change)."""
    others = ["damaged", None, True, [], {}, 0.5]

    def leaf_candidates(v):
        out = [c for c in others if type(c) is not type(v)]
        if type(v) is int:
            out.append(float(v))          # the same number, as a float
        return [out[int(rng.integers(len(out)))]]

    def walk(v, path):
        if isinstance(v, dict):
            yield f"{path} + extra key", lambda root, p=path: _at(root, p).__setitem__(
                "fuzz_extra", 1)
            for k in v:
                yield f"{path}.{k} deleted", lambda root, p=path, k=k: _at(root, p).pop(k)
                yield from walk(v[k], path + (k,))
        elif isinstance(v, list):
            for i, x in enumerate(v):
                yield from walk(x, path + (i,))
        if path:
            for c in leaf_candidates(v):
                yield f"{path} = {c!r}", lambda root, p=path, c=c: _at(root, p[:-1]).__setitem__(
                    p[-1], c)
    for label, edit in walk(value, ()):
        root = json.loads(json.dumps(value))
        edit(root)
        yield label, root


def _at(root, path):
    for k in path:
        root = root[k]
    return root


def format_damages(raw, rng):
    """(label, bytes) replacing a member's .npy bytes ``raw`` by bytes that are not a valid
    .npy array of plain values. The reader checks these before it knows which member it reads
    (``parse_npy``), so each is applied to a few members, not to all."""
    a = np.load(io.BytesIO(raw), allow_pickle=False)
    data = npy_data(raw)
    yield "pickle bytes", pickle.dumps(Payload())
    yield "object array", npy(np.array([Payload(), 1], dtype=object), allow_pickle=True)
    yield "object scalar", npy(np.array(Payload(), dtype=object), allow_pickle=True)
    yield "empty", b""
    yield "garbage", rng.bytes(int(rng.integers(1, 300)))
    yield "magic only", b"\x93NUMPY\x01\x00"
    yield "truncated .npy", raw[:int(rng.integers(1, len(raw)))]
    yield "trailing bytes", raw + b"\x00" * 8
    yield "unparsable header", (b"\x93NUMPY\x01\x00" + struct.pack("<H", 54)
                                + b"{'descr': <f4, 'fortran_order': nope, 'shape': ((((}".ljust(
                                    53) + b"\n")
    yield "header length 60000", b"\x93NUMPY\x02\x00" + struct.pack("<I", 60000) + b" " * 60000
    yield ".npy version 3", raw[:6] + b"\x03" + raw[7:]
    yield "huge shape", npy_header(a.dtype.str, (2**40,)) + data
    yield "huge 2-D shape", npy_header(a.dtype.str, (10**9, 10**9)) + data
    yield "negative shape", npy_header(a.dtype.str, (-1,)) + data
    yield "65-D shape", npy_header(a.dtype.str, (1,) * 65) + data
    for descr in ("<c8", "|V4", "<M8[s]", "|O", [("x", "<f4")], "(2,)<f4", "<U0", "|S4"):
        yield f"descr {descr!r}", npy_header(descr, a.shape) + data
    yield "bytes", npy(np.array(b"bytes"))
    yield "code point 0xFFFFFFFF", npy(np.frombuffer(b"\xff" * 4, "<U1").reshape(()))
    yield "surrogate", npy(np.frombuffer(struct.pack("<I", 0xD800), "<U1").reshape(()))


def schema_damages(name, raw, rng):
    """(label, bytes) replacing member ``name`` (original .npy bytes ``raw``) by a valid .npy
    array that breaks the member's declaration: text, other dtypes and shapes, big-endian
    data, NaN / inf, values out of range, damaged JSON. Applied to every member."""
    a = np.load(io.BytesIO(raw), allow_pickle=False)
    yield "text", npy(np.array("damaged"))
    yield "text array", npy(np.array(["a", "b"]))
    if a.dtype.kind in "biuf":
        yield "big-endian", npy(a.astype(a.dtype.newbyteorder(">")))
        with np.errstate(invalid="ignore", over="ignore"):
            for dt in (np.float32, np.float64, np.int64, np.int8, np.bool_):
                if a.dtype != dt:
                    yield f"as {np.dtype(dt)}", npy(a.astype(dt))
    else:
        yield "number", npy(np.array(1.0))
    if a.ndim == 1:
        yield "as a row", npy(a.reshape(1, -1))
    else:
        yield "flattened", npy(a.reshape(-1))           # a 0-d scalar as a 1-element array
    yield "extra axis", npy(a[None])
    if a.ndim >= 1 and a.shape[0] > 0:
        yield "one row less", npy(a[:-1])
        yield "one row more", npy(np.concatenate([a, a[:1]]))
    if a.ndim == 2 and a.shape[0] != a.shape[1]:
        yield "transposed", npy(np.ascontiguousarray(a.T))
    if a.dtype.kind == "f":
        for bad in (np.nan, np.inf, -np.inf):
            b = a.copy()
            if b.ndim == 0:
                b = np.array(bad, a.dtype)
            elif b.size:
                b.flat[int(rng.integers(b.size))] = bad
            yield f"{bad} inside", npy(b)
    if a.dtype.kind in "iuf" and a.ndim == 0:
        yield "negative", npy(np.array(-abs(a.item()) - 1, a.dtype))
    if a.dtype.kind in "iu" and a.ndim == 0:
        yield "2**63", npy(np.array(2**63, np.uint64))
    # value rules the schema declares: variances >= 0, standard deviations > 0
    if name.endswith("running_var") or name == "standardizer/std":
        yield "negative entries", npy(-np.abs(a) - 1)
    if name == "standardizer/std":
        yield "zeros", npy(np.zeros_like(a))
    if a.dtype.kind == "U" and a.ndim == 0:
        text = str(a)
        yield "other text", npy(np.array(text + "x"))
        yield "empty text", npy(np.array(""))
        try:
            value = json.loads(text)
        except ValueError:
            return
        yield "invalid JSON", npy(np.array(text[:-1]))
        yield "JSON nested 100k deep", npy(np.array("[" * 100_000 + "]" * 100_000))
        for top in ("[]", "5", "null", '"x"', "true", "NaN"):
            yield f"JSON {top}", npy(np.array(top))
        for label, v in json_mutations(value, rng):
            yield f"JSON {label}", npy(np.array(json.dumps(v)))


def cd_entries(blob):
    """(offset, name) of each central directory entry (APPNOTE 4.3.12)."""
    eocd = blob.rfind(b"PK\x05\x06")
    count, _, start = struct.unpack("<HII", blob[eocd + 10:eocd + 20])
    out, pos = [], start
    for _ in range(count):
        n, e, c = struct.unpack("<HHH", blob[pos + 28:pos + 34])
        out.append((pos, blob[pos + 46:pos + 46 + n].decode()))
        pos += 46 + n + e + c
    return out


def patched(blob, offset, fmt, value):
    b = bytearray(blob)
    struct.pack_into(fmt, b, offset, value)
    return bytes(b)


def damages(path, rng, flips=60, cuts=20, boundaries=30, format_members=3,
            schema_members=None):
    """(label, file bytes, damaged member(s) or None) for the damages of the file at
    ``path``: ``flips`` byte-flip cases, ``cuts`` random truncations plus ``boundaries`` at
    zip structure boundaries (member headers, names, data ends, the central directory), the
    archive edits, every member dropped, extra
    members, the :func:`schema_damages` of every member (or of ``schema_members`` drawn at
    random) and the :func:`format_damages` of ``format_members`` members drawn at random."""
    with open(path, "rb") as f:
        blob = f.read()
    members = members_of(path)
    names = [n for n, _ in members]
    # -- whole file
    for _ in range(flips):
        b = bytearray(blob)
        for pos in rng.integers(0, len(b), size=int(rng.choice([1, 1, 1, 2, 4, 8]))):
            b[pos] ^= int(rng.integers(1, 256))
        yield "flipped bytes", bytes(b), None
    with zipfile.ZipFile(path) as z:
        bounds = {0, len(blob) - 1, blob.rfind(b"PK\x05\x06"), cd_entries(blob)[0][0]}
        for info in z.infolist():
            bounds |= {info.header_offset, info.header_offset + 30,
                       info.header_offset + 30 + len(info.filename) + info.compress_size}
    cut_at = sorted(rng.choice(sorted(bounds), size=min(boundaries, len(bounds)), replace=False))
    for cut in cut_at + [int(c) for c in rng.integers(1, len(blob), size=cuts)]:
        yield f"truncated to {cut} bytes", blob[:cut], None
    yield "garbage appended", blob + rng.bytes(100), None
    yield "garbage prepended", rng.bytes(100) + blob, None
    yield "empty file", b"", None
    yield "text file", b"hello, not a model\n", None
    yield "a single .npy", npy(np.zeros(3)), None
    yield "empty archive", zip_bytes([]), None
    # -- archive
    yield "deflated", zip_bytes(members, zipfile.ZIP_DEFLATED), None
    yield "bzip2", zip_bytes(members, zipfile.ZIP_BZIP2), None
    yield "lzma", zip_bytes(members, zipfile.ZIP_LZMA), None
    cd = cd_entries(blob)
    for k in rng.choice(len(cd), size=min(4, len(cd)), replace=False):
        pos, name = cd[k]
        name = name[:-4]
        yield f"{name}: encrypted flag", patched(blob, pos + 8, "<H", 1), name
        yield f"{name}: declared size 4 GB", patched(blob, pos + 24, "<I", 0xFFFFFFF0), name
        yield f"{name}: declared size 0", patched(blob, pos + 24, "<I", 0), name
        yield f"{name}: compressed size 4 GB", patched(blob, pos + 20, "<I", 0xFFFFFFF0), name
        yield f"{name}: method 99", patched(blob, pos + 10, "<H", 99), name
        yield f"{name}: offset of member 0", patched(blob, pos + 42, "<I", 0), \
            (name, cd[0][1][:-4])           # either of the two overlapping members
    yield "a member twice", zip_bytes(members + [members[-1]]), None
    # -- members dropped, added, replaced
    for i, n in enumerate(names):
        yield f"{n} dropped", zip_bytes(members[:i] + members[i + 1:]), n[:-4]
    for extra, data in (("fuzz_extra.npy", npy(np.zeros(3))),
                        ("param/99/W.npy", npy(np.zeros((3, 3), np.float32))),
                        ("optimizer/fuzz.npy", npy(np.array(1.0))),
                        ("counter/fuzz.npy", npy(np.array(1))),
                        ("notes.txt", b"hello"), ("folder/", b"")):
        yield f"extra member {extra}", zip_bytes(members + [(extra, data)]), \
            extra[:-4] if extra.endswith(".npy") else extra
    draw = lambda k: set(rng.choice(len(members), size=min(k, len(members)),
                                    replace=False).tolist())
    sampled = draw(format_members)
    schema = draw(len(members) if schema_members is None else schema_members)
    for i, (n, raw) in enumerate(members):
        replaced = list(schema_damages(n[:-4], raw, rng)) if i in schema else []
        if i in sampled:
            replaced += list(format_damages(raw, rng))
        for label, data in replaced:
            yield f"{n}: {label}", zip_bytes(members[:i] + [(n, data)] + members[i + 1:]), n[:-4]


# =============================================================================== outcomes
def load_outcome(path, X, ref):
    """None when the file loads to a model predicting ``ref`` exactly, else the
    ModelFileError; anything else fails the test."""
    try:
        model = fd.load(path)
    except fd.ModelFileError as e:
        assert e.path == path and str(e).startswith(f"model file {path!r}"), str(e)
        return e
    np.testing.assert_array_equal(model.predict_proba(X), ref)
    return None


def run_cli(*argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main(list(argv))
    return rc, out.getvalue(), err.getvalue()


def resume_outcome(path, X, y):
    """fit(..., resume_from=path) one epoch past the checkpoint on a fresh model: its final
    parameters, or None after a ModelFileError that left the model untouched."""
    model = every_layer_net(seed=99)          # any seed: the checkpoint's wins
    before = model.get_weights()
    try:
        model.fit(X, y, optimizer=None, epochs=CKPT_EPOCHS + 1, batch_size=32, verbose=0,
                  resume_from=path)
    except fd.ModelFileError:
        for a, b in zip(before, model.get_weights()):
            np.testing.assert_array_equal(a, b)
        return None
    return model.get_weights()


def same_group(reported, damaged):
    """Members whose rules depend on each other: the position inside an epoch (rows and
    batch size bound the batch, the batch fixes the losses' shape), a callback's state and
    the arrays it declares (EarlyStopping's best weights)."""
    group = lambda n: "position/" if n.startswith("position/") else \
        "/".join(n.split("/")[:3]) if n.startswith("callback/") else n
    return isinstance(damaged, str) and isinstance(reported, str) \
        and group(reported) == group(damaged)


#: fixture -> damages() arguments: everything on the checkpoint; fewer whole-file cases on
#: the others, every member of momentum64 (float64, Momentum's text and bool
#: hyperparameters, clipping on) and a sample of the untrained model's (the same declarations
#: as the checkpoint's, without optimizer and history); every member of the mid-epoch one.
PLANS = {"checkpoint": {},
         "momentum64": {"flips": 20, "cuts": 10, "boundaries": 0, "format_members": 1},
         "untrained": {"flips": 20, "cuts": 10, "boundaries": 0, "format_members": 1,
                       "schema_members": 5},
         "midepoch": {"flips": 20, "cuts": 10, "boundaries": 0, "format_members": 1}}


@pytest.mark.parametrize("name", list(PLANS))
def test_every_damage_is_refused_or_harmless(fixtures, tmp_path, name):
    """Every damage through fd.load: ModelFileError naming the file (and the damaged member,
    the file as a whole, or the member that fixes the damaged one's shape), or a model
    predicting exactly what the original does. For the checkpoint, every damage that loads and
    a sample of the refused ones also go through fit(..., resume_from=) (the run must end with
    the parameters of a resume from the intact file) and `fastdl evaluate` (the same output,
    or exit status 2 with the ModelFileError)."""
    src, X, ref = fixtures[name]
    rng = np.random.default_rng([SEED, len(name)])
    ckpt = name == "checkpoint"
    if ckpt:
        Xt, yt = spirals()
        ref_weights = resume_outcome(src, Xt, yt)
        ok_out = run_cli("evaluate", src, "spirals", "--n", "60")
    refused = loaded = 0
    for n, (label, blob, member) in enumerate(damages(src, rng, **PLANS[name])):
        path = str(tmp_path / "damaged.npz")
        with open(path, "wb") as f:
            f.write(blob)
        try:
            err = load_outcome(path, X, ref)
            if err is not None:
                refused += 1
                assert err.member in (*np.atleast_1d(member), None) or member is None \
                    or err.member in ("architecture", "optimizer/optimizer",
                                      "counter/_fit_start_epoch", "counter/epochs_trained") \
                    or same_group(err.member, member), f"reported at {err.member!r}: {err}"
            else:
                loaded += 1
            if ckpt and (err is None or n % 25 == 0):
                got = resume_outcome(path, Xt, yt)
                assert (got is None) == (err is not None), f"load: {err}, resume: {got}"
                for a, b in zip(ref_weights, got or ()):
                    np.testing.assert_array_equal(a, b)
                rc, out, errtext = run_cli("evaluate", path, "spirals", "--n", "60")
                if err is None:
                    assert (rc, out.replace(path, src)) == (0, ok_out[1]), errtext
                else:
                    assert rc == 2 and errtext.startswith(
                        f"fastdl: error: model file {path!r}"), errtext
        except AssertionError as e:
            raise AssertionError(f"{name}, damage {label!r}: {e}") from None
        except Exception as e:
            raise AssertionError(f"{name}, damage {label!r}: escaped as {type(e).__name__}: "
                                 f"{e}") from e
    assert not RAN
    assert refused > 100 and loaded > 0, (refused, loaded)


def test_every_declared_member_is_in_a_fixture(fixtures):
    """Declaring a member in fastdl/model_schema.py without writing it in a fixture above
    leaves it unfuzzed: this fails until a fixture writes it."""
    declared, present = set(), set()
    for path, _, _ in fixtures.values():
        f = fio.read(path)
        declared |= set(f.declared)
        present |= set(f.arrays)
    static = {m.name for m in MEMBERS if not callable(m)}
    assert static <= declared
    assert declared == present, f"declared but in no fixture: {sorted(declared - present)}"


def test_loading_a_file_reads_nothing_beyond_its_size(fixtures, tmp_path, monkeypatch):
    """A forged header cannot make the reader allocate more than the file holds: every array
    handed to np.frombuffer is bounded by the member's bytes."""
    from fastdl import model_file
    sizes = []
    real = np.frombuffer

    def spy(buffer, dtype=float, count=-1, offset=0):
        sizes.append(count * np.dtype(dtype).itemsize)
        return real(buffer, dtype=dtype, count=count, offset=offset)
    monkeypatch.setattr(model_file.np, "frombuffer", spy)
    src, X, ref = fixtures["checkpoint"]
    members = members_of(src)
    total = 0
    for i, (n, raw) in enumerate(members):
        a = np.load(io.BytesIO(raw))
        blob = zip_bytes(members[:i] + [(n, npy_header(a.dtype.str, (2**40,)) + npy_data(raw))]
                         + members[i + 1:])
        path = str(tmp_path / "huge.npz")
        with open(path, "wb") as f:
            f.write(blob)
        with pytest.raises(fd.ModelFileError, match="declares"):
            fd.load(path)
        total = max(total, len(blob))
    assert max(sizes) <= total
