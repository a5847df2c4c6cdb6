"""MR-MAE: Mimic before Reconstruct: Enhancing Masked Autoencoders with Feature Mimicking (Gao et al., arXiv:2303.05475;
IJCV 2023; an earlier version was the withdrawn ICLR 2023 submission https://openreview.net/forum?id=UoBJm4V21md).

No official code was ever released (Alpha-VL/ConvMAE @4c97b4c holds only ConvMAE v1; issue Alpha-VL/ConvMAE#31 is
unanswered), so this is a first public implementation, written anew on top of :mod:`mim_zoo.core.algorithms.mae`. The
paper body was not retrievable; every detail below is either CERTAIN (stated in the arXiv / OpenReview abstracts) or
a CHOSEN DEFAULT, documented here and configurable.

CERTAIN (abstract):

* The MAE encoder sees the 25% visible tokens (75% masking) and MAE's decoder reconstructs the RGB pixels of the
  75% masked tokens (MAE's reconstruction loss, "inherited").
* A mimic loss on the 25% visible tokens *at the encoder output* regresses the features of frozen pre-trained
  CLIP (image-language) and DINO (image-image) models: high-level targets on the visible partition, low-level
  targets on the masked one, so the two do not interfere.
* MR-MAE base, 400 epochs: 85.8% IN-1K fine-tune (arXiv). The OpenReview version attributes 85.8 to MR-MCMAE (with
  ConvMAE's masked convolution stages) and 85.0 to the plain ViT-B at 200 epochs; this file implements the plain ViT.

CHOSEN DEFAULTS (configurable; see ``configs/mrmae/vitb_400e.py``):

* Teachers: OpenAI CLIP ViT-B/16 and DINO ViT-B/16, both on the full unmasked image at 224, features of the last
  block after the final LayerNorm (CLIP: after ``ln_post``, before the image-text projection), their tokens
  gathered at the student's visible positions (:class:`mim_zoo.core.targets.TeacherTarget`: ``block``, ``final_norm``,
  ``project``).
* Target normalisation: parameter-free LayerNorm on teacher features and on the prediction (``TeacherTarget.norm``).
* Mimic head: one linear layer per teacher on the encoder's final-normed visible tokens (``mimic_head``: depth 2
  gives Linear-GELU-Linear). The class token is not mimicked.
* Mimic loss: MSE averaged over channels and visible tokens (``mimic_loss``: ``"mse"``, ``"smooth_l1"``,
  ``"cosine"``); total ``L = w_rec * L_rec + sum_t w_t * L_mimic_t`` with all weights 1 (``loss_weights``).
* Reconstruction: MAE's norm-pix MSE on the masked tokens (``PixelTarget("patch")`` + ``MAEDecoder`` 512-d x 8).
* Masking: MAE's random 75% (``RandomMasking``). "Focused mimicking" (visible tokens chosen from the teacher's
  [CLS] attention) is optional: ``AttentionMasking`` + ``focus_teacher``; see ``configs/mrmae/vitb_400e_focused.py``.
* Not implemented: the paper's multi-layer fusion and the masked convolution stages of MR-MCMAE.

Cheaper teachers: ``teacher_dtype="bfloat16"`` runs both teacher forwards under bf16 autocast (features are returned
in fp32); ``None`` follows the surrounding precision (``--amp``), ``"float32"`` forces full precision.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..losses import masked_mse, per_token_mse
from ..registry import MODELS
from ..tokens import gather_tokens, mask_to_indices
from .mae import MAE, init_mae_weights

MIMIC_LOSSES = ("mse", "smooth_l1", "cosine")
TEACHER_DTYPES = (None, "float32", "bfloat16", "float16")


def mimic_loss(pred: Tensor, target: Tensor, kind: str = "mse", beta: float = 1.0) -> Tensor:
    """Feature-mimicking loss averaged over the given tokens (the visible ones, already gathered).

    Args:
        pred: ``[B, K, D]`` student predictions.
        target: ``[B, K, D]`` teacher features.
        kind: ``"mse"``: ``mean_d (p - t)^2``; ``"smooth_l1"``: ``mean_d smooth_l1(p - t; beta)``;
            ``"cosine"``: ``1 - cos(p, t)``; each per token, then averaged over ``B * K`` tokens.
        beta: threshold of the smooth-L1 loss.

    Returns:
        Scalar (float32).
    """
    if kind == "mse":
        per_token = per_token_mse(pred, target)  # [B, K]
    elif kind == "smooth_l1":
        per_token = F.smooth_l1_loss(pred.float(), target.float(), reduction="none", beta=beta).mean(dim=-1)
    elif kind == "cosine":
        per_token = 1.0 - F.cosine_similarity(pred.float(), target.float(), dim=-1)
    else:
        raise ValueError(f"mimic loss must be one of {MIMIC_LOSSES}, got {kind!r}")
    return per_token.mean()


def cls_attention(block: nn.Module, x: Tensor, num_prefix_tokens: int = 1) -> Tensor:
    """[CLS] -> patch attention of a timm ViT block, averaged over heads (as MILAN's ``importance``).

    Args:
        block: a timm ``Block`` (pre-norm: ``norm1`` then ``attn`` with ``qkv``, ``q_norm``, ``k_norm``, ``scale``).
        x: ``[B, N, D]`` the block's input (prefix tokens first).
        num_prefix_tokens: tokens before the patches (1: the class token).

    Returns:
        ``[B, L]`` softmax attention of the class token to each patch (rows sum to 1 minus the prefix share).
    """
    attn = block.attn
    tokens = block.norm1(x)
    batch, num, _ = tokens.shape
    qkv = attn.qkv(tokens).reshape(batch, num, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k = attn.q_norm(qkv[0][:, :, :1]), attn.k_norm(qkv[1])  # [B, H, 1, hd], [B, H, N, hd]
    probs = ((q * attn.scale) @ k.transpose(-2, -1)).float().softmax(dim=-1)  # [B, H, 1, N]
    return probs.mean(dim=1)[:, 0, num_prefix_tokens:]  # [B, L]


@contextmanager
def capture_cls_attention(vit: nn.Module, block: int) -> Iterator[dict[str, Tensor]]:
    """While open, every forward of ``vit`` through ``vit.blocks[block]`` stores that block's [CLS] -> patch
    attention in the yielded dict under ``"attention"`` (``[B, L]``). A forward pre-hook reads the block's input, so
    the teacher pass that computes the features also yields the attention; only the ``q k^T`` of one block is added.
    """
    captured: dict[str, Tensor] = {}

    def hook(module: nn.Module, args: tuple[Tensor, ...]) -> None:
        captured["attention"] = cls_attention(module, args[0], vit.num_prefix_tokens)

    handle = vit.blocks[block].register_forward_pre_hook(hook)
    try:
        yield captured
    finally:
        handle.remove()


class MimicHead(nn.Sequential):
    """A light head mapping encoder tokens to one teacher's feature space: ``[B, K, in_dim] -> [B, K, out_dim]``.

    Args:
        in_dim: encoder width; out_dim: the teacher's feature width (both filled in by the algorithm).
        depth: 1 = ``Linear`` (default); 2 = ``Linear -> GELU -> Linear``.
        hidden_dim: width of the 2-layer head (default ``in_dim``).
    """

    def __init__(self, in_dim: int, out_dim: int, depth: int = 1, hidden_dim: int | None = None) -> None:
        if depth not in (1, 2):
            raise ValueError(f"MimicHead depth must be 1 (linear) or 2 (MLP), got {depth}")
        hidden_dim = hidden_dim or in_dim
        layers = [nn.Linear(in_dim, out_dim)] if depth == 1 else [
            nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, out_dim)]
        super().__init__(*layers)
        self.apply(init_mae_weights)


@MODELS.register_module()
class MRMAE(MAE):
    """MAE + feature mimicking of frozen teachers on the visible tokens (see the module docstring).

    Args:
        encoder: ``ViTEncoder`` (or config); MR-MAE ViT-B/16: ``vit_base_patch16_224`` with sin-cos positions.
        teachers: ``{name: TeacherTarget or config}``, e.g. ``{"clip": ..., "dino": ...}``; the names key the loss
            terms (``loss_mimic_<name>``) and weights (``mimic_<name>``).
        masking: mask generator; default ``RandomMasking(0.75)``. ``AttentionMasking`` needs ``focus_teacher``.
        target: reconstruction target; default ``PixelTarget(norm="patch")`` (MAE's norm-pix loss).
        decoder: decoder config; ``type`` defaults to ``MAEDecoder`` (built with in_dim / grid_size / out_dim; a
            decoder declaring ``required_blocks`` receives those encoder block outputs, as in :class:`MAE`).
        mimic_head: :class:`MimicHead` arguments shared by all teachers (default: one linear layer).
        mimic_loss: ``"mse"`` (default), ``"smooth_l1"`` or ``"cosine"`` (see :func:`mimic_loss`).
        loss_weights: initial weights ``{"rec": 1.0, "mimic_<name>": 1.0, ...}``; ``MIMScheduleHook`` may schedule them.
        focus_teacher: teacher whose [CLS] attention of block ``focus_block`` is passed to the masking as
            ``attention`` (focused mimicking); ``None`` = none.
        focus_block: that block (-1 = last); it must run in the teacher's feature pass (``<=`` its ``block``).
        teacher_dtype: ``None`` (follow the surrounding autocast), ``"float32"``, ``"bfloat16"`` or ``"float16"``.
        data_preprocessor, init_cfg: mmengine's.
    """

    mask_context_keys = ("attention",)  # the focus teacher's [CLS] attention (with focus_teacher set)

    def __init__(self, encoder: nn.Module | dict, teachers: dict[str, nn.Module | dict], masking: dict | object = None,
                 target: nn.Module | dict | None = None, decoder: dict | None = None, mimic_head: dict | None = None,
                 mimic_loss: str = "mse", loss_weights: dict[str, float] | None = None,
                 focus_teacher: str | None = None, focus_block: int = -1, teacher_dtype: str | None = None,
                 data_preprocessor: dict | None = None, init_cfg: dict | None = None) -> None:
        super().__init__(encoder, masking, target, decoder, data_preprocessor, init_cfg)
        if not teachers:
            raise ValueError("MRMAE needs at least one teacher, e.g. teachers=dict(clip=..., dino=...)")
        if mimic_loss not in MIMIC_LOSSES:
            raise ValueError(f"mimic_loss must be one of {MIMIC_LOSSES}, got {mimic_loss!r}")
        if teacher_dtype not in TEACHER_DTYPES:
            raise ValueError(f"teacher_dtype must be one of {TEACHER_DTYPES}, got {teacher_dtype!r}")
        self.teachers = nn.ModuleDict({name: self.build_target(cfg, slot=f"teachers.{name}")
                                       for name, cfg in teachers.items()})
        self.mimic_heads = nn.ModuleDict({
            name: MimicHead(self.encoder.embed_dim, teacher.dim, **(mimic_head or {}))
            for name, teacher in self.teachers.items()
        })
        self.mimic_loss_kind, self.teacher_dtype = mimic_loss, teacher_dtype
        self.focus_teacher, self.focus_block = focus_teacher, focus_block
        self._check_focus()
        defaults = {"rec": 1.0, **{f"mimic_{name}": 1.0 for name in self.teachers}}
        unknown = sorted(set(loss_weights or {}) - set(defaults))
        if unknown:
            raise ValueError(f"unknown loss weight(s) {unknown}; MRMAE has {sorted(defaults)}")
        self.set_loss_weights(**{**defaults, **(loss_weights or {})})

    def _check_focus(self) -> None:
        needs_attention = "attention" in self.masking.context_keys
        if needs_attention and self.focus_teacher is None:
            raise ValueError(f"{type(self.masking).__name__} draws the mask from teacher attention; set "
                             f"focus_teacher to one of {list(self.teachers)}")
        if self.focus_teacher is None:
            return
        if self.focus_teacher not in self.teachers:
            raise ValueError(f"focus_teacher {self.focus_teacher!r} is not a teacher; have {list(self.teachers)}")
        teacher = self.teachers[self.focus_teacher]
        depth = len(teacher.teacher.blocks)
        if self.focus_block % depth > teacher.block % depth:
            raise ValueError(f"focus_block {self.focus_block} does not run in teacher {self.focus_teacher!r}'s "
                             f"feature pass (it stops after block {teacher.block}); use a block <= that one")

    def targets(self) -> list[nn.Module]:
        return [self.target, *self.teachers.values()]

    # --- the algorithm, top-down ---------------------------------------------------------------------------------
    def mask_context(self, images: Tensor) -> dict[str, Tensor | dict[str, Tensor]]:
        """With a focus teacher, the teachers' pass before the mask is drawn: ``attention [B, L]`` (the focus
        teacher's [CLS] attention, for the mask generator) and ``teacher_features {name: [B, L, D_t]}``, which
        :meth:`loss` reuses, so every teacher runs once per step. Without one: nothing (the loss runs the teachers).
        """
        if self.focus_teacher is None:
            return {}
        teacher_features, attention = self.teacher_features(images)
        return {"attention": attention, "teacher_features": teacher_features}

    def loss(self, images: Tensor, mask: Tensor, teacher_features: dict[str, Tensor] | None = None,
             attention: Tensor | None = None) -> dict[str, Tensor]:
        """Reconstruction of the masked tokens and mimicking on the visible ones.

        Args:
            images: ``[B, 3, H, W]``.
            mask: ``[B, L]``, True = masked.
            teacher_features: ``{name: [B, L, D_t]}`` from :meth:`mask_context`; computed here when not given.
            attention: ``[B, L]`` the focus teacher's [CLS] attention (:meth:`mask_context`); reported as
                ``stat_focus_coverage``, the share of it on the visible tokens.
        """
        if teacher_features is None:
            teacher_features = self.teacher_features(images)[0]
        keep_idx, _, restore_idx = mask_to_indices(mask)  # [B, K], [B, L]
        latent, block_feats = self.encoder.forward_visible(images, keep_idx, self.decoder.required_blocks)
        pred = self.decoder(latent, restore_idx, block_feats)  # [B, L, p*p*3]
        rec = masked_mse(self.target.normalize_prediction(pred), self.target(images, self.encoder), mask)
        losses = {"loss_rec": self.loss_weight("rec") * rec}
        mimic = self.mimic_losses(latent[:, self.encoder.num_prefix_tokens:], teacher_features, keep_idx)
        losses.update({f"loss_mimic_{name}": self.loss_weight(f"mimic_{name}") * value
                       for name, value in mimic.items()})
        losses["stat_mask_ratio"] = mask.float().mean().detach()
        if attention is not None:
            visible_share = (attention * ~mask).sum(dim=1) / attention.sum(dim=1)  # [B]
            losses["stat_focus_coverage"] = visible_share.mean().detach()
        return losses

    def mimic_losses(self, visible: Tensor, teacher_feats: dict[str, Tensor], keep_idx: Tensor) -> dict[str, Tensor]:
        """Unweighted mimic loss per teacher.

        Args:
            visible: ``[B, K, D]`` final-normed encoder tokens of the visible patches (class token dropped).
            teacher_feats: ``{name: [B, L, D_t]}`` teacher features of every patch.
            keep_idx: ``[B, K]`` positions of the visible patches (the order of ``visible``).
        """
        out = {}
        for name, teacher in self.teachers.items():
            pred = teacher.normalize_prediction(self.mimic_heads[name](visible))  # [B, K, D_t]
            target = gather_tokens(teacher_feats[name], keep_idx)  # [B, K, D_t] at the visible positions
            out[name] = mimic_loss(pred, target, self.mimic_loss_kind)
        return out

    @torch.no_grad()
    def teacher_features(self, images: Tensor) -> tuple[dict[str, Tensor], Tensor | None]:
        """Every teacher on the full image: ``({name: [B, L, D_t]} in fp32, [B, L] focus attention or None)``."""
        feats: dict[str, Tensor] = {}
        attention = None
        with self.teacher_precision(images.device):
            for name, teacher in self.teachers.items():
                if name != self.focus_teacher:
                    feats[name] = teacher(images).float()
                    continue
                with capture_cls_attention(teacher.teacher, self.focus_block) as captured:
                    feats[name] = teacher(images).float()
                attention = captured["attention"]
        return feats, attention

    def teacher_precision(self, device: torch.device) -> AbstractContextManager:
        """The autocast context the teachers run in (``teacher_dtype``)."""
        if self.teacher_dtype is None:
            return nullcontext()
        if self.teacher_dtype == "float32":
            return torch.autocast(device.type, enabled=False)
        return torch.autocast(device.type, dtype=getattr(torch, self.teacher_dtype))
