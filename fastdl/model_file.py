"""Reading model and checkpoint files: every damaged file is refused with one clear error.

A fastdl model file is a zip archive of ``.npy`` members, as ``np.savez`` writes it;
``fastdl/model_schema.py`` declares which members a file holds and what each must contain.
This module reads a file in three stages, and the caller builds nothing before all three pass:

1. **The container.** The file is parsed by :mod:`zipfile`. Whatever zipfile, zlib or the OS
   raise on a damaged archive (``BadZipFile``, ``NotImplementedError`` for a flipped version
   byte, ``EOFError``, ``zlib.error``, ``struct.error``, ``UnicodeDecodeError``, ...) becomes a
   :class:`ModelFileError`. Before any member is read, its declared size is bounded by the
   bytes it occupies in the file: members may not overlap or run past the end, a stored
   member's size is its compressed size, a deflated member's is at most
   :data:`DEFLATE_MAX_RATIO` times it (deflate's largest expansion, RFC 1951: a 258-byte match
   in about 2 bits). So a file of ``n`` bytes makes the reader allocate at most ``n`` bytes of
   stored members (``1032 n`` if deflated), never what a forged header claims. Only stored or
   deflated, unencrypted members are read, and zipfile checks each member's CRC-32 as it
   reaches the member's end, which catches any flipped byte inside the data.
2. **Each member as a .npy array**, parsed here rather than by ``np.load`` (which hands back
   raw bytes for a member that is not ``.npy``): the magic string, a format 1.0 or 2.0 header
   (NumPy's header parser: literals only), a dtype of booleans, integers, floats or unicode
   text (never an object dtype, so never pickle; no structured or sub-array dtypes), and a
   shape whose element count times the item size is exactly the number of bytes that follow.
3. **The schema** (:func:`check_members`): members in declaration order, each checked by its
   kind (:class:`Text`, :class:`Int`, :class:`Scalar`, :class:`Json`, :class:`Tensor`):
   dtype and shape (possibly implied by members checked before it, e.g. the architecture),
   scalars being 0-d, metadata of the expected type, finite values where they must be.
   A missing required member or a member nobody declared is refused too.

Every refusal is a :class:`ModelFileError` (a ``ValueError``) whose message names the file, the
member (when one is at fault) and what was expected. Format references: the ZIP application
note (PKWARE APPNOTE.TXT 6.3), ``numpy.lib.format`` (the .npy format).
"""

from __future__ import annotations

import io
import math
import os
import struct
import tokenize
import types
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

#: Deflate's largest expansion ratio (RFC 1951; zlib's technical details give 1032:1).
DEFLATE_MAX_RATIO = 1032
#: The longest .npy header accepted (NumPy's own default limit for untrusted files).
MAX_NPY_HEADER = 10000
#: dtype kinds a member may have: booleans, signed and unsigned integers, floats, unicode text.
PLAIN_KINDS = "biufU"
_NPY_MAGIC = b"\x93NUMPY"
#: What zipfile, zlib and the OS raise while parsing a damaged archive (zipfile documents no
#: complete list: these were all seen, or are raised by the zipfile source, on damaged input).
_CONTAINER_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError,
                     NotImplementedError, RuntimeError, ValueError, struct.error,
                     OverflowError, KeyError, IndexError, TypeError)


class ModelFileError(ValueError):
    """A model or checkpoint file that cannot be used: damaged, not written by fastdl, from a
    newer fastdl, or (``fit(..., resume_from=...)``) saved from a different model.

    Attributes: ``path``; ``member``, the member at fault (None: the file as a whole);
    ``problem``, what was found; ``expected``, what a valid file holds there.
    """

    def __init__(self, path, member, problem, expected):
        self.path, self.member, self.problem, self.expected = path, member, problem, expected
        where = f"model file {path!r}" + (f", member {member!r}:" if member is not None else "")
        super().__init__(f"{where} {problem}; expected {expected}")

    def __reduce__(self):        # picklable (process pools re-raise it in the parent)
        return type(self), (self.path, self.member, self.problem, self.expected)


class Refused(Exception):
    """Raised by a member kind's check: ``expected`` (and what was ``found``, when the
    default description of the array says too little)."""

    def __init__(self, expected, found=None):
        super().__init__(expected)
        self.expected, self.found = expected, found


# =============================================================================== container
def read_members(path):
    """``{name: array}`` of every member of the .npz at ``path`` (stages 1 and 2 above), or a
    :class:`ModelFileError`. A missing file raises ``FileNotFoundError`` and an unreadable one
    its ``OSError`` (nothing is wrong with the file's contents then)."""
    if os.path.isdir(path):
        raise ModelFileError(path, None, "is a directory", "a .npz file written by model.save")
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if f.read(len(_NPY_MAGIC)) == _NPY_MAGIC:
            raise ModelFileError(path, None, "holds a single .npy array, not a .npz archive",
                                 "a .npz archive of arrays written by model.save")
        f.seek(0)
        try:
            archive = zipfile.ZipFile(f)
        except _CONTAINER_ERRORS as e:
            raise _corrupt(path, None, e) from None
        with archive:
            infos = archive.infolist()
            members = _member_names(path, infos)
            _check_layout(path, infos, size)
            out = {}
            for name, info in zip(members, infos):
                try:
                    raw = _read_member(archive, info)
                except _CONTAINER_ERRORS as e:
                    raise _corrupt(path, name, e) from None
                out[name] = parse_npy(path, name, raw)
    return out


def _read_member(archive, info, chunk=1 << 24):
    """The member's bytes, read in chunks into one bytearray of its declared (bounded) size:
    the arrays are views of it, so a member costs its size once, not twice."""
    raw = bytearray(info.file_size)
    with archive.open(info) as m:
        pos = 0
        while pos < len(raw):
            piece = m.read(min(chunk, len(raw) - pos))
            if not piece:
                raise EOFError(f"the member ends after {pos} of its {len(raw)} bytes")
            raw[pos:pos + len(piece)] = piece
            pos += len(piece)
        if m.read(1):         # reaching the end also makes zipfile check the CRC-32
            raise zipfile.BadZipFile("the member is longer than its zip header declares")
    return raw


def _corrupt(path, member, e):
    problem = f"truncated or corrupt ({type(e).__name__}: {e})"
    if member is None:
        return ModelFileError(path, None, f"is not a readable zip archive: {problem}",
                              "a .npz archive as model.save or ModelCheckpoint wrote it")
    return ModelFileError(path, member, f"cannot be read: {problem}",
                          "the member's bytes as written (matching its zip header and CRC-32)")


def _member_names(path, infos):
    names = []
    for info in infos:
        if not info.filename.endswith(".npy"):
            raise ModelFileError(path, info.filename, "is not a .npy file",
                                 "only <name>.npy members, as np.savez writes them")
        names.append(info.filename[:-4])
    seen = set()
    for n in names:
        if n in seen:
            raise ModelFileError(path, n, "is listed twice in the archive",
                                 "each member once")
        seen.add(n)
    return names


def _check_layout(path, infos, size):
    """Bound every member's declared size by the bytes it occupies (see the module doc)."""
    for info in infos:
        name = info.filename[:-4]
        if info.flag_bits & 0x1:
            raise ModelFileError(path, name, "is encrypted",
                                 "unencrypted members, as np.savez writes them")
        if info.compress_type == zipfile.ZIP_STORED:
            if info.file_size != info.compress_size:
                raise ModelFileError(path, name, f"is stored but declares {info.file_size} "
                                     f"bytes in {info.compress_size}",
                                     "equal sizes (stored members are not compressed)")
        elif info.compress_type == zipfile.ZIP_DEFLATED:
            if info.file_size > DEFLATE_MAX_RATIO * info.compress_size + DEFLATE_MAX_RATIO:
                raise ModelFileError(path, name, f"is deflated and declares {info.file_size}"
                                     f" bytes from {info.compress_size}",
                                     f"at most {DEFLATE_MAX_RATIO} times the compressed size "
                                     "(deflate's largest ratio)")
        else:
            raise ModelFileError(path, name, f"uses zip compression method {info.compress_type}",
                                 "stored (0) or deflated (8) members")
    spans = sorted((info.header_offset, info.compress_size, info.filename[:-4]) for info in infos)
    expected = f"members that fit in the file's {size} bytes without overlapping"
    for k, (start, length, name) in enumerate(spans):
        if start < 0 or start + length > size:
            raise ModelFileError(path, name, f"spans {length} bytes from offset {start}, past "
                                 "the end of the file", expected)
        if k + 1 < len(spans) and start + length > spans[k + 1][0]:
            other = spans[k + 1]
            raise ModelFileError(path, other[2], f"starts at offset {other[0]}, inside member "
                                 f"{name!r} ({length} bytes from offset {start})", expected)


def parse_npy(path, name, raw):
    """The array in ``raw``, the bytes of a .npy file (stage 2 of the module doc); a view of
    ``raw`` when it is a bytearray (C order)."""
    not_npy = lambda problem: ModelFileError(
        path, name, problem, "a .npy array of plain numbers or text (np.save format 1.0 or 2.0)")
    f = io.BytesIO(bytes(raw[:MAX_NPY_HEADER + 16]))     # magic, length field and header
    try:
        version = np.lib.format.read_magic(f)
    except (ValueError, EOFError) as e:
        raise not_npy(f"is not a .npy array ({e})") from None
    readers = {(1, 0): np.lib.format.read_array_header_1_0,
               (2, 0): np.lib.format.read_array_header_2_0}
    if version not in readers:
        raise not_npy(f"has .npy format version {version[0]}.{version[1]}")
    try:
        shape, fortran, dtype = readers[version](f, max_header_size=MAX_NPY_HEADER)
    except (ValueError, TypeError, SyntaxError, RecursionError, OverflowError, EOFError,
            struct.error, tokenize.TokenError) as e:   # NumPy tokenizes 1.0 headers first
        raise not_npy(f"has a .npy header that cannot be parsed ({type(e).__name__}: "
                      f"{e})") from None
    if dtype.hasobject:
        raise not_npy(f"is an object array (dtype {dtype}: pickled Python objects)")
    if dtype.kind not in PLAIN_KINDS or dtype.fields is not None or dtype.subdtype is not None \
            or dtype.itemsize == 0:
        raise not_npy(f"has dtype {dtype}")
    if len(shape) > 32 or not all(type(d) is int and d >= 0 for d in shape):
        raise not_npy(f"declares shape {shape!r}")
    count = math.prod(shape)
    offset = f.tell()
    if count * dtype.itemsize != len(raw) - offset:
        raise not_npy(f"declares {count * dtype.itemsize} bytes of data ({dtype}, shape "
                      f"{shape}) but holds {len(raw) - offset}")
    if dtype.kind == "U":       # UCS-4 code units; Python cannot hold the invalid ones
        codes = np.frombuffer(raw, dtype=np.dtype("u4").newbyteorder(dtype.byteorder),
                              count=count * dtype.itemsize // 4, offset=offset)
        if ((codes > 0x10FFFF) | ((codes >= 0xD800) & (codes <= 0xDFFF))).any():
            raise not_npy("holds text with invalid code points (surrogates or beyond U+10FFFF)")
    a = np.frombuffer(raw, dtype=dtype, count=count, offset=offset)   # writable: a bytearray
    return np.asarray(a.reshape(shape, order="F" if fortran else "C"), order="C")


# =============================================================================== schema
@dataclass(frozen=True)
class Member:
    """One member of a model file: its ``name``, its ``kind`` (what it must hold) and whether
    it is ``required``: True, False, a name prefix such as ``"optimizer/"`` (required when any
    member under that prefix is present: a group that is all there or not at all), or a
    function of the :class:`ModelFile` checked so far returning True or False."""
    name: str
    kind: Any
    required: Any = True


@dataclass
class ModelFile:
    """A file that passed every check: ``path``, the raw ``arrays`` and the decoded
    ``values`` (str, int, parsed JSON, arrays) of its members, by member name; ``declared``
    lists every member name the schema declared for this file, present or not."""
    path: str
    arrays: dict
    values: dict = field(default_factory=dict)
    declared: list = field(default_factory=list)

    def __getitem__(self, name):
        return self.values[name]

    def __contains__(self, name):
        return name in self.values

    def get(self, name, default=None):
        return self.values.get(name, default)

    def group(self, prefix):
        """``{rest: array}`` of the members named ``prefix + rest``."""
        return {k[len(prefix):]: v for k, v in self.arrays.items() if k.startswith(prefix)}


def check_members(path, arrays, schema):
    """Check ``arrays`` (from :func:`read_members`) against ``schema``, a list whose entries
    are a :class:`Member` or a function of the :class:`ModelFile` checked so far returning
    Members (families such as one member per parameter tensor, known once the architecture
    is). Returns the :class:`ModelFile`; raises :class:`ModelFileError`."""
    mf = ModelFile(path, arrays)
    for entry in schema:
        for m in (entry(mf) if callable(entry) else (entry,)):
            if m.name in mf.declared:   # pragma: no cover - a schema bug, see the tests
                raise RuntimeError(f"member {m.name!r} is declared twice")
            mf.declared.append(m.name)
            a = arrays.get(m.name)
            if a is None:
                if _required(m.required, mf):
                    raise ModelFileError(path, m.name, "is missing", m.kind.describe(mf))
                continue
            try:
                mf.values[m.name] = m.kind.check(a, mf)
            except Refused as e:
                raise ModelFileError(path, m.name, e.found or f"found {describe(a)}",
                                     e.expected) from None
    unknown = sorted(set(arrays) - set(mf.declared))
    if unknown:
        raise ModelFileError(path, unknown[0], f"is not a member fastdl writes (unknown: "
                             f"{_short(unknown)})", "only the members model.save writes (the "
                             "file is damaged, or from a newer fastdl: upgrade fastdl)")
    return mf


def _required(rule, mf):
    if isinstance(rule, bool):
        return rule
    if isinstance(rule, str):
        return any(k.startswith(rule) for k in mf.arrays)
    return bool(rule(mf))


def describe(a):
    """A short description of an array for error messages."""
    if a.dtype.kind == "U" and a.ndim == 0:
        return f"the text {_short(_text(a))}"
    if a.ndim == 0:
        return f"the {a.dtype} scalar {a.item()!r}"
    return f"a {a.dtype} array of shape {a.shape}"


def _short(value, n=80):
    r = repr(value)
    return r if len(r) <= n else r[:n - 3] + "..."


def _text(a):
    return str(a[()])           # code points were checked by parse_npy


def _resolve(value, mf):
    """A rule's value, or what the function given in its place says for this file (only
    plain functions: dtypes such as np.float64 are callable too)."""
    return value(mf) if isinstance(value, types.FunctionType) else value


# ----------------------------------------------------------------------------- member kinds
@dataclass(frozen=True)
class Text:
    """A 0-d unicode array; decoded to ``str``. ``choices``: the allowed values (or a function
    of the ModelFile giving them)."""
    choices: Any = None

    def describe(self, mf):
        choices = _resolve(self.choices, mf)
        return "a text scalar (0-d unicode array)" + (f", one of {choices}" if choices else "")

    def check(self, a, mf):
        if a.dtype.kind != "U" or a.ndim != 0:
            raise Refused(self.describe(mf))
        value = _text(a)
        choices = _resolve(self.choices, mf)
        if choices is not None and value not in choices:
            raise Refused(self.describe(mf))
        return value


@dataclass(frozen=True)
class Int:
    """A 0-d integer array within [minimum, maximum] (``maximum`` may be a function of the
    ModelFile); decoded to ``int``."""
    minimum: int = 0
    maximum: Any = 2**63 - 1     # int64: counters go to kernels as int64

    def describe(self, mf):
        hi = _resolve(self.maximum, mf)
        return (f"an integer scalar (0-d int64 array) >= {self.minimum}"
                + (f" and <= {hi}" if hi is not None else ""))

    def check(self, a, mf):
        if a.dtype.kind not in "iu" or a.ndim != 0:
            raise Refused(self.describe(mf))
        v, hi = int(a), _resolve(self.maximum, mf)
        if v < self.minimum or (hi is not None and v > hi):
            raise Refused(self.describe(mf))
        return v


@dataclass(frozen=True)
class Scalar:
    """A 0-d array of one of the dtype ``kinds`` whose Python value passes ``validate`` (a
    function raising ValueError or TypeError with its reason, e.g. an optimizer's setter)
    and that is stored with the dtype the writer gives the validated value
    (``np.asarray(value).dtype``, any width for text: a float hyperparameter saved as an
    integer is refused);
    decoded to that value (``validate``'s return value; None is stored as NaN)."""
    kinds: str
    validate: Callable
    what: str

    def describe(self, mf):
        return f"a scalar (0-d array): {self.what}"

    def check(self, a, mf):
        if a.dtype.kind not in self.kinds or a.ndim != 0:
            raise Refused(self.describe(mf))
        value = _text(a) if a.dtype.kind == "U" else a.item()
        try:
            value = self.validate(value)
        except (ValueError, TypeError) as e:
            raise Refused(f"{self.what} ({e})") from None
        stored = np.asarray(value).dtype
        if value is not None and stored != a.dtype and not (stored.kind == a.dtype.kind == "U"):
            raise Refused(f"{self.what}, stored as {stored}")
        return value


@dataclass(frozen=True)
class Json:
    """A 0-d unicode array holding JSON that ``validate`` accepts: a function of (the parsed
    value, the ModelFile) returning the decoded value or raising :class:`Refused`."""
    validate: Callable
    what: str

    def describe(self, mf):
        return f"JSON text (0-d unicode array): {self.what}"

    def check(self, a, mf):
        import json
        if a.dtype.kind != "U" or a.ndim != 0:
            raise Refused(self.describe(mf))
        try:
            value = json.loads(_text(a))
        except (ValueError, RecursionError) as e:
            raise Refused(self.describe(mf), f"found text that is not valid JSON ({e})") from None
        return self.validate(value, mf)


@dataclass(frozen=True)
class Tensor:
    """An array of exactly ``dtype`` and ``shape`` (each may be a function of the ModelFile),
    with only finite values when ``finite``, and passing ``rule`` (a function of the array
    returning None, or what was expected when it fails); ``note`` says where the shape comes
    from. Decoded to the array itself."""
    shape: Any
    dtype: Any
    finite: bool = True
    rule: Callable = None
    note: str = ""

    def describe(self, mf):
        dt, shape = np.dtype(_resolve(self.dtype, mf)), tuple(_resolve(self.shape, mf))
        return (f"a {dt} array of shape {shape}" + (self.note and f" ({self.note})")
                + (" with finite values" if self.finite else ""))

    def check(self, a, mf):
        dt, shape = np.dtype(_resolve(self.dtype, mf)), tuple(_resolve(self.shape, mf))
        if a.dtype != dt or a.shape != shape:
            raise Refused(self.describe(mf))
        if self.finite and a.dtype.kind == "f" and not np.isfinite(a).all():
            bad = int(a.size - np.count_nonzero(np.isfinite(a)))
            raise Refused(self.describe(mf), f"found {bad} NaN or infinite value(s)")
        if self.rule is not None:
            problem = self.rule(a)
            if problem is not None:
                raise Refused(f"{self.describe(mf)}, {problem}", f"found {describe(a)} "
                              "breaking that rule")
        return a
