"""The MAE peers mim_zoo's MAE is timed against: mmpretrain's MAE and facebookresearch/mae's ``models_mae``.

Both are built with the architecture of the mim_zoo MAE config being measured (:class:`MAEGeometry`), so the three
compute the same thing; at ViT-B/16 224^2 that is exactly their paper models:

* mmpretrain 1.2 (an installed dependency): ``MAE`` / ``MAEViT`` / ``MAEPretrainDecoder`` / ``MAEPretrainHead``
  from its registry, with the model and optimizer of its own config
  ``configs/mae/mae_vit-base-p16_8xb512-amp-coslr-800e_in1k.py`` (AdamW, its param-wise decay rules).
* facebookresearch/mae (a checkout the user passes; never copied here): ``models_mae.MaskedAutoencoderViT`` with
  ``norm_pix_loss=True`` and the optimizer of its ``main_pretrain.py`` (``torch.optim.AdamW`` over timm's
  no-decay parameter groups). The code targets timm 0.3.2; two shims adapt it at import time, changing no
  computation: timm >= 0.9 ``Block`` lost the ``qk_scale`` argument (facebookresearch/mae#17, #58; the official
  code only ever passes ``None``, the default scale) and numpy >= 1.24 removed the ``np.float`` alias its
  ``util/pos_embed.py`` uses (aliased to ``float`` only while the model is built). With timm 1.0 its blocks run
  timm's fused attention, as mim_zoo's do.

Each peer's step: the loss of its own forward, backward, its own optimizer's step.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .common import build_optimizer, quiet_mmengine
from .measure import Subject

MMPRETRAIN_MAE_CONFIG = "configs/mae/mae_vit-base-p16_8xb512-amp-coslr-800e_in1k.py"  # inside mmpretrain's .mim


@dataclass(frozen=True)
class MAEGeometry:
    """The architecture of an MAE: encoder and decoder sizes, input, mask ratio, target normalisation."""

    img_size: int = 224
    patch_size: int = 16
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    decoder_embed_dim: int = 512
    decoder_depth: int = 8
    decoder_num_heads: int = 16
    mask_ratio: float = 0.75
    norm_pix: bool = True

    @classmethod
    def of(cls, mae: nn.Module) -> MAEGeometry:
        """Read the geometry of a built mim_zoo ``MAE`` (ViT encoder, ``MAEDecoder``)."""
        from mim_zoo.core.targets import PixelTarget

        encoder, decoder = mae.encoder, mae.decoder
        block = encoder.vit.blocks[0]
        return cls(
            img_size=encoder.grid_size[0] * encoder.patch_size, patch_size=encoder.patch_size,
            embed_dim=encoder.embed_dim, depth=encoder.depth, num_heads=encoder.num_heads,
            mlp_ratio=block.mlp.fc1.out_features / encoder.embed_dim,
            decoder_embed_dim=decoder.embed.out_features, decoder_depth=len(decoder.blocks),
            decoder_num_heads=decoder.blocks[0].attn.num_heads, mask_ratio=mae.masking.ratio,
            norm_pix=isinstance(mae.target, PixelTarget) and mae.target.norm == "patch",
        )


VIT_B16 = MAEGeometry()


# --- mmpretrain ----------------------------------------------------------------------------------------------------
def mmpretrain_config_path() -> Path:
    import mmpretrain

    path = Path(mmpretrain.__file__).parent / ".mim" / MMPRETRAIN_MAE_CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"mmpretrain's MAE config is missing from the installed package: {path}")
    return path


def _mmpretrain_model_cfg(cfg: dict, geo: MAEGeometry) -> dict:
    """mmpretrain's MAE model config with the architecture replaced by ``geo`` (a no-op at ViT-B/16)."""
    if geo == VIT_B16:
        return cfg
    grid = geo.img_size // geo.patch_size
    cfg["backbone"].update(
        arch=dict(embed_dims=geo.embed_dim, num_layers=geo.depth, num_heads=geo.num_heads,
                  feedforward_channels=int(geo.embed_dim * geo.mlp_ratio)),
        img_size=geo.img_size, patch_size=geo.patch_size, mask_ratio=geo.mask_ratio)
    cfg["neck"].update(num_patches=grid * grid, patch_size=geo.patch_size, embed_dim=geo.embed_dim,
                       decoder_embed_dim=geo.decoder_embed_dim, decoder_depth=geo.decoder_depth,
                       decoder_num_heads=geo.decoder_num_heads, mlp_ratio=geo.mlp_ratio)
    cfg["head"].update(patch_size=geo.patch_size, norm_pix=geo.norm_pix)
    return cfg


def mmpretrain_mae(geo: MAEGeometry, device: torch.device) -> Subject:
    """mmpretrain's MAE built from its registry, with its config's optimizer."""
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS as MMPRETRAIN_MODELS
    from mmpretrain.utils import register_all_modules

    quiet_mmengine()
    register_all_modules(init_default_scope=False)
    path = mmpretrain_config_path()
    cfg = Config.fromfile(str(path))
    model_cfg = _mmpretrain_model_cfg(cfg.model.to_dict(), geo)
    with DefaultScope.overwrite_default_scope("mmpretrain"):
        model = MMPRETRAIN_MODELS.build(model_cfg)
        model.init_weights()
        model = model.to(device).train()
        optimizer = build_optimizer(model, cfg.optim_wrapper)

    def loss(images: Tensor) -> Tensor:
        return model(images, [], mode="loss")["loss"]

    return Subject(name="MAE (mmpretrain)", model=model, loss=loss, optimizer=optimizer,
                   image_size=(geo.img_size, geo.img_size), group="MAE",
                   info={"peer": True, "source": f"mmpretrain {_version('mmpretrain')}: {MMPRETRAIN_MAE_CONFIG}",
                         "optimizer": "AdamW (mmengine, its config's param-wise decay)", "geometry": asdict(geo)})


# --- facebookresearch/mae ------------------------------------------------------------------------------------------
def _timm_block_without_qk_scale(block_cls: type) -> Any:
    """timm's ``Block`` accepting (and checking) the ``qk_scale=None`` that timm 0.3.2 took."""
    def block(*args: Any, qk_scale: float | None = None, **kwargs: Any) -> nn.Module:
        if qk_scale is not None:
            raise ValueError("timm >= 0.9 Block has no qk_scale; only qk_scale=None (the default scale) is supported")
        return block_cls(*args, **kwargs)

    return block


@contextlib.contextmanager
def _numpy_float_alias() -> Iterator[None]:
    """``np.float`` (removed in numpy 1.24) as ``float`` for the duration of the block, as numpy < 1.24 had it."""
    added = "float" not in np.__dict__
    if added:
        np.float = float  # type: ignore[attr-defined]
    try:
        yield
    finally:
        if added:
            del np.float  # type: ignore[attr-defined]


def import_official_models_mae(checkout: str | Path) -> ModuleType:
    """Import ``models_mae`` from a facebookresearch/mae checkout under a private name, with the ``qk_scale`` shim.

    Its ``util`` package is importable only while the module executes, so it cannot shadow anything afterwards.
    """
    root = Path(checkout).expanduser().resolve()
    source = root / "models_mae.py"
    if not source.is_file() or not (root / "util" / "pos_embed.py").is_file():
        raise FileNotFoundError(
            f"{str(checkout)!r} is not a facebookresearch/mae checkout (no models_mae.py and util/pos_embed.py); "
            "clone https://github.com/facebookresearch/mae and pass its directory with --official-mae"
        )
    saved = {name: mod for name, mod in sys.modules.items() if name == "util" or name.startswith("util.")}
    for name in saved:
        del sys.modules[name]
    sys.path.insert(0, str(root))
    try:
        spec = importlib.util.spec_from_file_location("mim_zoo_peer_official_models_mae", source)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(root))
        for name in [n for n in sys.modules if n == "util" or n.startswith("util.")]:
            del sys.modules[name]
        sys.modules.update(saved)
    module.Block = _timm_block_without_qk_scale(module.Block)
    return module


def official_mae(checkout: str | Path, geo: MAEGeometry, device: torch.device) -> Subject:
    """facebookresearch/mae's ``MaskedAutoencoderViT`` with ``main_pretrain.py``'s optimizer."""
    from functools import partial

    from timm.optim import param_groups_weight_decay

    module = import_official_models_mae(checkout)
    with _numpy_float_alias():
        if geo == VIT_B16:
            model = module.mae_vit_base_patch16_dec512d8b(norm_pix_loss=True)
        else:
            model = module.MaskedAutoencoderViT(
                img_size=geo.img_size, patch_size=geo.patch_size, embed_dim=geo.embed_dim, depth=geo.depth,
                num_heads=geo.num_heads, decoder_embed_dim=geo.decoder_embed_dim, decoder_depth=geo.decoder_depth,
                decoder_num_heads=geo.decoder_num_heads, mlp_ratio=geo.mlp_ratio,
                norm_layer=partial(nn.LayerNorm, eps=1e-6), norm_pix_loss=geo.norm_pix)
    model = model.to(device).train()
    # main_pretrain.py: optim_factory.add_weight_decay(model, 0.05) (timm 0.3.2), AdamW betas (0.9, 0.95)
    optimizer = torch.optim.AdamW(param_groups_weight_decay(model, 0.05), lr=1.5e-4, betas=(0.9, 0.95))

    def loss(images: Tensor) -> Tensor:
        return model(images, mask_ratio=geo.mask_ratio)[0]

    return Subject(name="MAE (official)", model=model, loss=loss, optimizer=optimizer,
                   image_size=(geo.img_size, geo.img_size), group="MAE",
                   info={"peer": True, "source": f"facebookresearch/mae models_mae.py from {Path(checkout).resolve()}",
                         "optimizer": "torch.optim.AdamW over timm no-decay groups (main_pretrain.py)",
                         "shims": ["timm Block without qk_scale", "np.float alias while building"],
                         "geometry": asdict(geo)})


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)
