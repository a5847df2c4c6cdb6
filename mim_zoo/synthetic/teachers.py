"""Tiny, RANDOMLY INITIALISED teachers written in the on-disk layouts of the real ones: for smoke tests only.

MR-MAE (and any config using :class:`mim_zoo.core.targets.TeacherTarget`) loads frozen teachers from local files in
their original layouts. CPU smoke runs and tests need such files without the 335 MB / 343 MB downloads, so this module
writes small ViTs with random weights in exactly those layouts:

* ``"openai_clip"``: OpenAI CLIP's ``ViT-B-16.pt`` layout: ``visual.*`` keys (``conv1``, ``class_embedding``,
  ``positional_embedding``, ``ln_pre``, ``transformer.resblocks.N.{ln_1,attn.in_proj_*,attn.out_proj,ln_2,
  mlp.c_fc,mlp.c_proj}``, ``ln_post``, ``proj``), fp16 weights, next to a minimal text tower (``token_embedding``,
  ``positional_embedding``, ``transformer.*``, ``ln_final``, ``text_projection``, ``logit_scale``) and the
  ``input_resolution`` / ``context_length`` / ``vocab_size`` entries the real archive carries. Saved as a TorchScript
  archive (``torch.jit.save`` of a scripted module holding the parameters, like the real file) or with
  ``torch.save``. timm model: ``vit_base_patch16_clip_quickgelu_224``.
* ``"dino"``: DINO's ``dino_vitbase16_pretrain.pth`` layout: a plain state dict (``torch.save``) under timm's
  names (``cls_token``, ``pos_embed``, ``patch_embed.proj``, ``blocks.N.*``, ``norm``; no head), fp32. timm model:
  ``vit_base_patch16_224``.

The OpenAI key layout is the inverse of timm's ``_convert_openai_clip`` (``timm/models/vision_transformer.py``,
timm 1.0.31), derived by reading it: :func:`timm_to_openai_clip`. Real files: OpenAI CLIP
https://openaipublic.azureedge.net/clip/models/5806e77cd80f8b59890b7e101eabd078d9fb84e6937f9e85e4ecb61988df416f/ViT-B-16.pt
(openai/CLIP ``clip/clip.py:_MODELS``), DINO
https://dl.fbaipublicfiles.com/dino/dino_vitbase16_pretrain/dino_vitbase16_pretrain.pth (facebookresearch/dino).

Configs request files with ``generate_teachers = [dict(layout=..., path=..., ...), ...]``; ``tools/train.py``
(:func:`mim_zoo.engine.config.prepare_config`) writes them once. A written file carries a ``<path>.json`` stamp with its
parameters; a file without the stamp (e.g. a real teacher) is never overwritten.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import timm
import torch
from torch import Tensor, nn

LAYOUTS = {"openai_clip": "vit_base_patch16_clip_quickgelu_224", "dino": "vit_base_patch16_224"}
FILE_FORMATS = {"openai_clip": ("torchscript", "torch"), "dino": ("torch",)}

# timm name -> OpenAI name, the inverse of the `swaps` in timm's _convert_openai_clip (applied in this order).
_TIMM_TO_OPENAI = (
    ("patch_embed.proj", "conv1"),
    ("norm_pre", "ln_pre"),
    ("blocks.", "transformer.resblocks."),
    (".norm1", ".ln_1"),
    (".norm2", ".ln_2"),
    ("attn.qkv.", "attn.in_proj_"),
    ("attn.proj", "attn.out_proj"),
    ("mlp.fc1", "mlp.c_fc"),
    ("mlp.fc2", "mlp.c_proj"),
)


def timm_to_openai_clip(state: dict[str, Tensor], prefix: str = "visual.") -> dict[str, Tensor]:
    """A timm CLIP ViT state dict in OpenAI's ``visual.*`` layout (inverse of timm's ``_convert_openai_clip``).

    ``cls_token [1, 1, D] -> class_embedding [D]``, ``pos_embed [1, N, D] -> positional_embedding [N, D]``,
    ``norm -> ln_post`` and ``head.weight [E, D] -> proj [D, E]`` (OpenAI's projection has no bias, so ``head.bias``
    must be zero); every other key is renamed by :data:`_TIMM_TO_OPENAI`.
    """
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if key == "cls_token":
            out[prefix + "class_embedding"] = value.reshape(-1)
        elif key == "pos_embed":
            out[prefix + "positional_embedding"] = value.squeeze(0)
        elif key.startswith("norm."):
            out[prefix + key.replace("norm.", "ln_post.", 1)] = value
        elif key == "head.weight":
            out[prefix + "proj"] = value.t().contiguous()
        elif key == "head.bias":
            if value.abs().max() > 0:
                raise ValueError("OpenAI CLIP's projection has no bias; head.bias must be zero")
        else:
            for timm_name, openai_name in _TIMM_TO_OPENAI:
                key = key.replace(timm_name, openai_name)
            out[prefix + key] = value
    return out


def openai_clip_text_tower(width: int, embed_dim: int, seed: int = 0, vocab_size: int = 16,
                           context_length: int = 4) -> dict[str, Tensor]:
    """A one-block random text tower with the keys of OpenAI's CLIP (openai/CLIP ``clip/model.py:CLIP``), so the
    file holds both towers like the real one, plus the ``input_resolution`` / ``context_length`` / ``vocab_size``
    entries (the text side is never loaded; it is there to check that loading ignores it)."""
    generator = torch.Generator().manual_seed(seed)
    block = {
        "ln_1.weight": (width,), "ln_1.bias": (width,), "attn.in_proj_weight": (3 * width, width),
        "attn.in_proj_bias": (3 * width,), "attn.out_proj.weight": (width, width), "attn.out_proj.bias": (width,),
        "ln_2.weight": (width,), "ln_2.bias": (width,), "mlp.c_fc.weight": (4 * width, width),
        "mlp.c_fc.bias": (4 * width,), "mlp.c_proj.weight": (width, 4 * width), "mlp.c_proj.bias": (width,),
    }
    shapes = {
        "token_embedding.weight": (vocab_size, width), "positional_embedding": (context_length, width),
        **{f"transformer.resblocks.0.{k}": v for k, v in block.items()},
        "ln_final.weight": (width,), "ln_final.bias": (width,), "text_projection": (width, embed_dim),
    }
    out = {k: (torch.randn(shape, generator=generator) * 0.02).half() for k, shape in shapes.items()}
    out["logit_scale"] = torch.tensor(4.6052)
    out.update(input_resolution=torch.tensor(224), context_length=torch.tensor(context_length),
               vocab_size=torch.tensor(vocab_size))
    return out


def build_tiny_teacher(layout: str, seed: int = 0, **arch_kwargs: int) -> nn.Module:
    """The random timm model a teacher file is written from, in eval mode.

    Every tensor is drawn at random (LayerNorm weights around 1, everything else around 0), so that a wrong key
    mapping changes the features. ``"openai_clip"`` weights are rounded to fp16, as the real file stores them, so
    the model loaded back from the file is this one exactly; it keeps its projection head (``num_classes``
    defaults to 24).

    Args:
        layout: ``"openai_clip"`` or ``"dino"``.
        seed: RNG seed (the global RNG is left untouched).
        **arch_kwargs: ``timm.create_model`` sizes, e.g. ``img_size``, ``patch_size``, ``embed_dim``, ``depth``,
            ``num_heads``.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown teacher layout {layout!r}; known: {', '.join(LAYOUTS)}")
    head = {"num_classes": arch_kwargs.pop("num_classes", 24)} if layout == "openai_clip" else {"num_classes": 0}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = timm.create_model(LAYOUTS[layout], pretrained=False, **head, **arch_kwargs)
        with torch.no_grad():
            for name, param in model.named_parameters():
                is_norm_weight = name.endswith("weight") and param.dim() == 1
                param.copy_((1.0 if is_norm_weight else 0.0) + torch.randn_like(param) * 0.1)
            if layout == "openai_clip":
                model.head.bias.zero_()  # OpenAI's projection has no bias
                for param in model.parameters():
                    param.copy_(param.half().float())
    return model.eval()


class _ParameterTree(nn.Module):
    """Holds parameters under dotted names, so a TorchScript archive can carry an arbitrary key layout."""


def _parameter_tree(state: dict[str, Tensor]) -> nn.Module:
    root = _ParameterTree()
    for key, value in state.items():
        *path, leaf = key.split(".")
        module = root
        for part in path:
            child = dict(module.named_children()).get(part)
            if child is None:
                child = _ParameterTree()
                module.add_module(part, child)
            module = child
        if value.is_floating_point():
            module.register_parameter(leaf, nn.Parameter(value.clone(), requires_grad=False))
        else:
            module.register_buffer(leaf, value.clone())
    return root


def save_torchscript_state(state: dict[str, Tensor], path: str | Path) -> None:
    """Write ``state`` as a TorchScript archive (``torch.jit.load(path).state_dict()`` returns it)."""
    torch.jit.save(torch.jit.script(_parameter_tree(state)), str(path))


def teacher_file_state(model: nn.Module, layout: str) -> dict[str, Tensor]:
    """The state dict of ``model`` in the on-disk layout of the real ``layout`` file."""
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if layout == "dino":
        return state
    width = model.embed_dim
    return {**{k: v.half() for k, v in timm_to_openai_clip(state).items()},
            **openai_clip_text_tower(width, model.head.out_features)}


def write_teacher(path: str | Path, layout: str, file_format: str | None = None, seed: int = 0,
                  **arch_kwargs: int) -> Path:
    """Write a tiny random teacher at ``path`` in the layout (and format) of the real file.

    Args:
        path: output file.
        layout: ``"openai_clip"`` (``ViT-B-16.pt``) or ``"dino"`` (``dino_vitbase16_pretrain.pth``).
        file_format: ``"torchscript"`` (OpenAI CLIP's real format, its default) or ``"torch"`` (``torch.save``).
        seed: RNG seed of the weights.
        **arch_kwargs: sizes for :func:`build_tiny_teacher`; the config's ``TeacherTarget.model_kwargs`` must match.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown teacher layout {layout!r}; known: {', '.join(LAYOUTS)}")
    file_format = file_format or FILE_FORMATS[layout][0]
    if file_format not in FILE_FORMATS[layout]:
        raise ValueError(f"a {layout!r} teacher is written as one of {FILE_FORMATS[layout]}, got {file_format!r}")
    state = teacher_file_state(build_tiny_teacher(layout, seed, **arch_kwargs), layout)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if file_format == "torchscript":
        save_torchscript_state(state, path)
    else:
        torch.save(state, path)
    return path


def generate_teachers(specs: Sequence[dict]) -> list[Path]:
    """Write (once) every teacher a config asks for; ``specs`` are :func:`write_teacher` arguments.

    Idempotent: a file whose ``<path>.json`` stamp matches its spec is kept. A file without a stamp was not written
    here (it may be a real teacher) and is never overwritten.
    """
    written = []
    for spec in specs:
        spec = dict(spec)
        path = Path(spec.pop("path"))
        stamp = path.with_name(path.name + ".json")
        params = json.loads(json.dumps(spec))  # plain types, as read back from the stamp
        if path.exists() and not stamp.is_file():
            raise FileExistsError(
                f"generate_teachers: {str(path)!r} exists but was not written by mim_zoo.synthetic.teachers (no "
                f"{stamp.name}); refusing to overwrite it. Point the tiny teacher at another path."
            )
        if not (path.is_file() and json.loads(stamp.read_text()) == params):
            write_teacher(path, **spec)
            stamp.write_text(json.dumps(params, sort_keys=True))
        written.append(path)
    return written
