"""Target generators: no-grad modules that map images to per-patch targets ``[B, L, D]`` (STYLE R5).

Contract (``TargetProtocol`` and, for pixels, ``PixelTargetProtocol`` in :mod:`mim_zoo.core.contracts`):

* ``bind(encoder)`` is called once by the algorithm's constructor. The target reads the geometry it needs (patch
  size, grid) from the encoder, checks it is compatible, and sets ``self.dim`` (``D``). A momentum target copies the
  encoder here, so its state dict exists before any checkpoint is loaded.
* ``forward(images, encoder=None) -> [B, L, D]`` runs under ``torch.no_grad()``; ``encoder`` is the online encoder
  for targets that need it.
* ``normalize_prediction(pred)`` applies to predictions whatever normalisation the target applied to itself (e.g.
  the parameter-free LayerNorm on both sides of BootMAE's feature loss); identity by default.
* ``update(encoder, momentum)`` is the only mutation: EMA targets follow the online encoder after each optimizer
  step, with a momentum computed outside the model (``mim_zoo.engine.hooks.MIMScheduleHook``); a no-op elsewhere.
"""

from __future__ import annotations

import copy
import os
import warnings
import zipfile
from abc import ABCMeta, abstractmethod
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .contracts import PlainEncoderProtocol, check_plugin
from .registry import TARGET_GENERATORS
from .tokens import patchify


class TargetGenerator(nn.Module, metaclass=ABCMeta):
    """Base class. Subclasses implement :meth:`bind` and :meth:`compute`."""

    dim: int

    @abstractmethod
    def bind(self, encoder: nn.Module) -> None:
        """Read the geometry from ``encoder``, check compatibility, set ``self.dim``."""

    @abstractmethod
    def compute(self, images: Tensor, encoder: nn.Module | None) -> Tensor:
        """``[B, 3, H, W] -> [B, L, D]`` (called under ``no_grad``)."""

    @torch.no_grad()
    def forward(self, images: Tensor, encoder: nn.Module | None = None) -> Tensor:
        return self.compute(images, encoder).detach()

    def normalize_prediction(self, pred: Tensor) -> Tensor:
        return pred

    @torch.no_grad()
    def update(self, encoder: nn.Module, momentum: float) -> None:
        """Follow the online encoder (EMA targets only)."""


def layer_norm(x: Tensor, eps: float = 1e-6) -> Tensor:
    """Parameter-free LayerNorm over the last dim (BootMAE ``nn.LayerNorm(D, eps=1e-6, elementwise_affine=False)``)."""
    return F.layer_norm(x, x.shape[-1:], eps=eps)


@TARGET_GENERATORS.register_module()
class PixelTarget(TargetGenerator):
    """Patchified pixels ``[B, L, p*p*3]`` (MAE order), optionally normalised per patch.

    Args:
        norm: ``"none"``: raw pixels; ``"patch"``: MAE's ``norm_pix_loss`` (mean and *unbiased* variance over all
            ``p*p*3`` values of a patch, ``eps`` 1e-6; facebookresearch/mae ``models_mae.py:forward_loss``);
            ``"patch_channel"``: BootMAE's per-patch, per-channel normalisation (mean and biased variance over the
            ``p*p`` pixels of each channel, ``eps`` 1e-5 inside the sqrt; LightDXY/BootMAE
            ``run_pretraining.py:train_one_epoch``).
        patch_size: pixels per target patch; ``None`` takes the encoder's output stride at :meth:`bind`.
        eps: overrides the default epsilon of the chosen ``norm``.
    """

    _default_eps = {"none": 0.0, "patch": 1e-6, "patch_channel": 1e-5}

    def __init__(self, norm: str = "patch", patch_size: int | None = None, eps: float | None = None) -> None:
        super().__init__()
        if norm not in self._default_eps:
            raise ValueError(f"PixelTarget norm must be one of {sorted(self._default_eps)}, got {norm!r}")
        self.norm = norm
        self.patch_size = patch_size
        self.eps = self._default_eps[norm] if eps is None else eps

    def bind(self, encoder: nn.Module) -> None:
        if self.patch_size is None:
            self.patch_size = int(encoder.patch_size)
        self.dim = self.patch_size**2 * 3

    def _patch_stats(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Patches grouped for normalisation ``[B, L, N, G]`` with their mean and std over ``N`` (``[B, L, 1, G]``).

        ``"patch"``: ``G = 1`` over all ``p*p*3`` values, unbiased variance (MAE); ``"patch_channel"``: ``G = 3``
        channels over ``p*p`` pixels, biased variance (BootMAE).
        """
        x = patchify(images.float(), self.patch_size)  # [B, L, p*p*3], (p, q, c) order
        if self.norm == "patch_channel":
            x = x.unflatten(-1, (self.patch_size**2, 3))
            var = x.var(dim=2, keepdim=True, unbiased=False)
        else:
            x = x.unsqueeze(-1)
            var = x.var(dim=2, keepdim=True) if self.norm == "patch" else torch.ones_like(x[:, :, :1])
        mean = x.mean(dim=2, keepdim=True) if self.norm != "none" else torch.zeros_like(var)
        return x, mean, (var + self.eps) ** 0.5

    def compute(self, images: Tensor, encoder: nn.Module | None) -> Tensor:
        x, mean, std = self._patch_stats(images)
        return ((x - mean) / std).flatten(2)  # [B, L, p*p*3]

    def to_pixels(self, pred: Tensor, images: Tensor) -> Tensor:
        """Undo the normalisation with the statistics of ``images``: ``[B, L, p*p*3] -> [B, L, p*p*3]`` pixels.

        Pictures show each predicted patch in its own brightness and contrast, as the MAE demo does for norm-pix
        models.
        """
        x, mean, std = self._patch_stats(images)
        return (pred.float().reshape(x.shape) * std + mean).flatten(2)


@TARGET_GENERATORS.register_module()
class MomentumTarget(TargetGenerator):
    """Features of an exponential moving average (EMA) of the online encoder, on the full unmasked image.

    BootMAE (LightDXY/BootMAE ``run_pretraining.py``, ``modeling_pretrain_bootmae.py:get_feature``): the EMA
    encoder sees all patches, the target is the raw output of the last block *before* the final norm, and both
    target and prediction pass a parameter-free LayerNorm before the MSE. The EMA update is
    ``ema = m * ema + (1 - m) * online`` after every optimizer step; ``m`` comes from a schedule outside the model.

    Args:
        block: encoder block whose output is the target (-1 = last).
        final_norm: apply the encoder's final norm (BootMAE: no).
        norm: ``"ln"``: parameter-free LayerNorm on target and prediction (BootMAE); ``"none"``.
    """

    def __init__(self, block: int = -1, final_norm: bool = False, norm: str = "ln") -> None:
        super().__init__()
        if norm not in ("ln", "none"):
            raise ValueError(f"MomentumTarget norm must be 'ln' or 'none', got {norm!r}")
        self.block, self.final_norm, self.norm = block, final_norm, norm
        self.ema: nn.Module | None = None

    def bind(self, encoder: nn.Module) -> None:
        check_plugin(encoder, PlainEncoderProtocol, "MomentumTarget's encoder")  # copied; runs forward_full
        self.ema = copy.deepcopy(encoder)
        self.ema.requires_grad_(False)
        self.ema.grad_checkpointing = False
        self.ema.eval()
        self.dim = int(encoder.embed_dim)

    def train(self, mode: bool = True) -> MomentumTarget:
        super().train(mode)
        if self.ema is not None:
            self.ema.eval()  # the momentum encoder always runs in eval mode (drop-path off)
        return self

    def compute(self, images: Tensor, encoder: nn.Module | None) -> Tensor:
        feats = self.ema.forward_full(images, block=self.block, norm=self.final_norm)  # [B, L, D]
        return layer_norm(feats) if self.norm == "ln" else feats

    def normalize_prediction(self, pred: Tensor) -> Tensor:
        return layer_norm(pred) if self.norm == "ln" else pred

    @torch.no_grad()
    def update(self, encoder: nn.Module, momentum: float) -> None:
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"EMA momentum must lie in [0, 1], got {momentum}")
        ema_params = dict(self.ema.named_parameters())
        pairs = [(ema_params[name], param.detach()) for name, param in encoder.named_parameters()]
        # ema = m * ema + (1 - m) * param, every tensor in one foreach call (one multi-tensor kernel on CUDA)
        torch._foreach_lerp_([e for e, _ in pairs], [p for _, p in pairs], 1.0 - momentum)
        ema_buffers = dict(self.ema.named_buffers())
        for name, buf in encoder.named_buffers():
            ema_buffers[name].copy_(buf)


def is_torchscript(path: str) -> bool:
    """TorchScript archives are zip files holding ``<name>/constants.pkl`` (``torch.save`` files do not)."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("/constants.pkl") for name in archive.namelist())


def load_checkpoint_file(path: str, what: str, hint: str = "") -> dict[str, Tensor]:
    """A state dict from a local checkpoint: ``torch.save`` files (optionally under ``model``/``state_dict``/
    ``teacher``) or TorchScript archives (OpenAI CLIP's ``ViT-B-16.pt``). ``hint`` ends the missing-file error."""
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{what}: checkpoint file {path!r} does not exist. Download it and pass its local path "
            f"(this machine has no network access at training time).{hint}"
        )
    if is_torchscript(path):  # OpenAI distributes CLIP as TorchScript; its tensors are all we read
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*torch.jit.load.*is deprecated", category=FutureWarning)
            obj: Any = torch.jit.load(path, map_location="cpu").state_dict()
    else:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model", "teacher", "module"):
        if isinstance(obj, dict) and key in obj and isinstance(obj[key], dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError(f"{what}: {path!r} holds no state dict of tensors")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _drop_teacher_weights(module: nn.Module, state_dict: dict, prefix: str, local_metadata: dict) -> None:
    for key in [k for k in state_dict if k.startswith(prefix + "teacher.")]:
        del state_dict[key]


def _fill_teacher_weights(module: nn.Module, state_dict: dict, prefix: str, *args: object) -> None:
    for name, value in module.teacher.state_dict().items():
        state_dict.setdefault(f"{prefix}teacher.{name}", value)


@TARGET_GENERATORS.register_module()
class TeacherTarget(TargetGenerator):
    """Patch features of a frozen teacher: any timm ViT loaded from a local checkpoint file.

    The file may be in timm's layout or in an original layout that timm's own ``checkpoint_filter_fn`` converts:
    OpenAI CLIP (``visual.*``, e.g. ``ViT-B-16.pt``, a TorchScript archive; use
    ``vit_base_patch16_clip_quickgelu_224``) or DINO (``dino_vitbase16_pretrain.pth``; ``vit_base_patch16_224``).
    Loading is strict apart from the classifier head: a file of another architecture fails with the mismatched keys,
    and so does a file of another patch size (which timm would otherwise resample silently). A file trained at
    another resolution is accepted; timm resamples its position embedding to ``model_kwargs["img_size"]``.

    Teachers expect their own input normalisation (CLIP: its mean/std; DINO: ImageNet's), while the images arrive
    normalised by the data preprocessor. Give both (``mean``/``std`` of the teacher, ``input_mean``/``input_std`` of
    the data, in the same units) and the teacher sees ``(images * input_std + input_mean - mean) / std``.

    Args:
        arch: timm model name of the teacher.
        checkpoint: local path of the weights.
        block: block whose output is the target (-1 = last).
        final_norm: apply the teacher's final norm (CLIP: the target is after ``ln_post``, i.e. yes).
        norm: ``"ln"`` (parameter-free LayerNorm on target and prediction) or ``"none"``.
        model_kwargs: extra ``timm.create_model`` arguments (e.g. ``img_size``).
        project: apply the teacher's head to every patch token (CLIP: the image-text projection ``visual.proj``,
            768 -> 512 for ViT-B/16); the file must then hold the head.
        mean, std: per-channel input normalisation the teacher was trained with; ``None`` = the data's.
        input_mean, input_std: per-channel normalisation of the incoming images (the data preprocessor's).
        source: where the file comes from (e.g. its official URL); quoted in the errors about the file.
    """

    def __init__(self, arch: str, checkpoint: str, block: int = -1, final_norm: bool = True, norm: str = "ln",
                 model_kwargs: dict | None = None, project: bool = False, mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None, input_mean: Sequence[float] | None = None,
                 input_std: Sequence[float] | None = None, source: str | None = None) -> None:
        super().__init__()
        if norm not in ("ln", "none"):
            raise ValueError(f"TeacherTarget norm must be 'ln' or 'none', got {norm!r}")
        self.arch, self.checkpoint_path, self.source = arch, checkpoint, source
        self.block, self.final_norm, self.norm, self.project = block, final_norm, norm, project
        head_kwargs = {} if project else {"num_classes": 0}
        from timm import create_model  # timm loads with the first teacher built, not with the registry

        self.teacher = create_model(arch, pretrained=False, **head_kwargs, **(model_kwargs or {}))
        self._load(checkpoint)
        self.teacher.requires_grad_(False)
        self.teacher.eval()
        self.dim = int(self.teacher.head.out_features if project else self.teacher.embed_dim)
        scale, shift = _renormalization(mean, std, input_mean, input_std)
        self.register_buffer("input_scale", scale, persistent=False)  # [1, 3, 1, 1]
        self.register_buffer("input_shift", shift, persistent=False)
        # The frozen weights come from `checkpoint`, not from the algorithm's state: checkpoints stay small (a ViT-B
        # teacher would add ~350 MB to every one) and a resumed or converted model reloads the same file.
        self.register_state_dict_post_hook(_drop_teacher_weights)
        self.register_load_state_dict_pre_hook(_fill_teacher_weights)

    def _file_hint(self) -> str:
        return f" Expected: {self.source}." if self.source else ""

    def _load(self, path: str) -> None:
        raw = load_checkpoint_file(path, f"teacher {self.arch}", hint=self._file_hint())
        state = teacher_state_dict(raw, self.teacher, self.arch, path, keep_head=self.project, hint=self._file_hint())
        self.teacher.load_state_dict(state)

    def bind(self, encoder: nn.Module) -> None:
        teacher_grid = tuple(self.teacher.patch_embed.grid_size)
        if teacher_grid != tuple(encoder.grid_size):
            raise ValueError(
                f"teacher '{self.arch}' yields a {teacher_grid[0]}x{teacher_grid[1]} token grid but the encoder "
                f"yields {encoder.grid_size[0]}x{encoder.grid_size[1]}; give the teacher the matching img_size "
                "through model_kwargs"
            )

    def train(self, mode: bool = True) -> TeacherTarget:
        super().train(mode)
        self.teacher.eval()  # frozen: always eval
        return self

    def compute(self, images: Tensor, encoder: nn.Module | None) -> Tensor:
        depth = len(self.teacher.blocks)
        images = images * self.input_scale + self.input_shift  # the teacher's own input normalisation
        feats = self.teacher.forward_intermediates(
            images, indices=[self.block % depth], norm=self.final_norm, stop_early=True, output_fmt="NLC",
            intermediates_only=True,
        )[0]  # [B, L, D] patch tokens (prefix tokens dropped)
        if self.project:
            feats = self.teacher.head(feats)  # [B, L, D_head]
        return layer_norm(feats) if self.norm == "ln" else feats

    def normalize_prediction(self, pred: Tensor) -> Tensor:
        return layer_norm(pred) if self.norm == "ln" else pred


def teacher_state_dict(raw: dict[str, Tensor], model: nn.Module, arch: str, source: str, keep_head: bool = False,
                       hint: str = "") -> dict[str, Tensor]:
    """``raw`` weights (timm, OpenAI CLIP ``visual.*`` or DINO layout) in the names of the timm ViT ``model``.

    timm's own ``checkpoint_filter_fn`` converts the original layouts; the result must then fit ``model`` exactly
    (the head is dropped unless ``keep_head``), else ``ValueError`` lists the mismatched keys. A file of another
    patch size is refused too, since ``checkpoint_filter_fn`` would resample it without a word.
    """
    from timm.models.vision_transformer import checkpoint_filter_fn

    kernel = next((tuple(v.shape[-2:]) for k, v in raw.items()
                   if k.endswith(("patch_embed.proj.weight", "visual.conv1.weight")) and v.dim() == 4), None)
    own_kernel = tuple(model.patch_embed.proj.weight.shape[-2:])
    if kernel is not None and kernel != own_kernel:
        raise ValueError(
            f"teacher checkpoint {source!r} has {kernel[0]}x{kernel[1]} patches but timm '{arch}' (with "
            f"model_kwargs) has {own_kernel[0]}x{own_kernel[1]}; pass the file of that patch size (e.g. "
            f"dino_vitbase16_pretrain.pth, not dino_vitbase8_pretrain.pth).{hint}"
        )
    state = checkpoint_filter_fn(raw, model)
    if not keep_head:
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or mismatched:
        raise ValueError(
            f"teacher checkpoint {source!r} does not match timm '{arch}': missing {missing[:8]}, "
            f"unexpected {unexpected[:8]}, shape mismatch {mismatched[:8]} (first 8 of each). Pass the file "
            "of that architecture (e.g. OpenAI CLIP ViT-B-16.pt with 'vit_base_patch16_clip_quickgelu_224', "
            f"DINO dino_vitbase16_pretrain.pth with 'vit_base_patch16_224').{hint}"
        )
    return state


def _renormalization(mean: Sequence[float] | None, std: Sequence[float] | None, input_mean: Sequence[float] | None,
                     input_std: Sequence[float] | None) -> tuple[Tensor, Tensor]:
    """``scale, shift`` (``[1, C, 1, 1]``) with ``x * scale + shift == (x * input_std + input_mean - mean) / std``."""
    given = [v is not None for v in (mean, std, input_mean, input_std)]
    if not any(given):
        return torch.ones(1, 3, 1, 1), torch.zeros(1, 3, 1, 1)
    if not all(given):
        raise ValueError(
            "TeacherTarget renormalises its input only when mean, std, input_mean and input_std are all given "
            "(teacher's and data preprocessor's statistics, in the same units); got "
            f"mean={mean}, std={std}, input_mean={input_mean}, input_std={input_std}"
        )
    mean_t, std_t, in_mean, in_std = (torch.as_tensor(v, dtype=torch.float32).view(1, -1, 1, 1)
                                      for v in (mean, std, input_mean, input_std))
    return in_std / std_t, (in_mean - mean_t) / std_t
