"""The plugin contracts as code (mim_zoo/core/contracts.py): every registered plugin against its protocol, the
check's errors where an algorithm is built, structural (non-subclass) plugins, and the one mask path.

A plugin registered without an entry in the tables below fails ``test_every_registered_plugin_declares_its_protocol``.
"""

from __future__ import annotations

import pytest
import timm
import torch
from mmengine.config import Config
from torch import Tensor, nn

from mim_zoo.core.algorithms import MAE, MRMAE, BootMAE, MixMAE
from mim_zoo.core.contracts import (
    ContractError,
    DecoderProtocol,
    HierarchicalEncoderProtocol,
    MaskGeneratorProtocol,
    PixelTargetProtocol,
    PlainEncoderProtocol,
    TargetProtocol,
    check_plugin,
    missing_members,
    protocol_members,
)
from mim_zoo.core.masking import AttentionMasking, RandomMasking
from mim_zoo.core.targets import MomentumTarget
from mim_zoo.core.tokens import patchify
from mim_zoo.engine.config import prepare_config
from mim_zoo.registry import ENCODER_INITS, MASK_GENERATORS, MODELS, TARGET_GENERATORS, registered_names

from .conftest import CATALOGUE, REPO, TINY_VIT, registered_algorithms
from .test_masking import EXAMPLES as MASK_EXAMPLES
from .test_targets import TEACHER_ARCH
from .test_targets import example as target_example

TINY_MIXMIM = dict(type="MixMIMEncoder", arch=dict(embed_dims=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 2]),
                   img_size=64, patch_size=2, window_size=[8, 8, 4, 4])
DECODER_ARGS = dict(in_dim=64, grid_size=(8, 8), out_dim=48, embed_dim=32, depth=1, num_heads=4)

# MODELS entries that are not algorithms: (example config, protocol). MixMAEDecoder is MixMAE's own two-stream
# decoder (latent + shared mask); no other algorithm can take it, so it is not a seam and has no protocol.
MODEL_PLUGINS = {
    "ViTEncoder": (TINY_VIT, PlainEncoderProtocol),
    "MixMIMEncoder": (TINY_MIXMIM, HierarchicalEncoderProtocol),
    "MAEDecoder": (dict(type="MAEDecoder", **DECODER_ARGS), DecoderProtocol),
    "TargetAwareDecoder": (dict(type="TargetAwareDecoder", **DECODER_ARGS), DecoderProtocol),
    "BootMAEPixelDecoder": (dict(type="BootMAEPixelDecoder", **DECODER_ARGS), DecoderProtocol),
    "BootMAEFeatureDecoder": (dict(type="BootMAEFeatureDecoder", **DECODER_ARGS), DecoderProtocol),
    "MixMAEDecoder": (None, None),
}
TARGET_PROTOCOLS = {"PixelTarget": PixelTargetProtocol, "MomentumTarget": TargetProtocol,
                    "TeacherTarget": TargetProtocol}
ENCODER_INIT_FAMILIES = {"mae": TINY_VIT, "bootmae": TINY_VIT, "mixmim": TINY_MIXMIM}  # the encoder each init is for


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny timm ViT saved as a plain state dict, for the TeacherTarget example of tests/test_targets.py."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("teacher") / "tiny_vit.pth"
    torch.save(timm.create_model(pretrained=False, num_classes=0, **TEACHER_ARCH).state_dict(), path)
    return str(path)


def build_algorithm(name: str) -> nn.Module:
    torch.manual_seed(0)
    return MODELS.build(prepare_config(Config.fromfile(str(CATALOGUE.tiny_config(name)))).model)


def tiny_images(encoder: nn.Module, batch: int = 4) -> Tensor:
    side = encoder.grid_size[0] * encoder.patch_size
    return torch.randn(batch, 3, side, side, generator=torch.Generator().manual_seed(0))


# --- every registered plugin against its protocol -----------------------------------------------------------------
def test_every_registered_plugin_declares_its_protocol():
    algorithms = set(registered_algorithms())
    assert set(registered_names(MODELS)) - algorithms <= set(MODEL_PLUGINS), "add the new model plugin's protocol"
    assert set(registered_names(MASK_GENERATORS)) <= set(MASK_EXAMPLES)
    assert set(registered_names(TARGET_GENERATORS)) <= set(TARGET_PROTOCOLS)
    assert set(registered_names(ENCODER_INITS)) <= set(ENCODER_INIT_FAMILIES)


@pytest.mark.parametrize("name", sorted(k for k, (cfg, _) in MODEL_PLUGINS.items() if cfg is not None))
def test_model_plugin_implements_its_protocol(name):
    cfg, protocol = MODEL_PLUGINS[name]
    plugin = MODELS.build(dict(cfg))
    assert isinstance(plugin, protocol) and not missing_members(plugin, protocol)
    check_plugin(plugin, protocol, name)


@pytest.mark.parametrize("name", sorted(MASK_EXAMPLES))
def test_mask_generator_implements_its_protocol(name):
    gen = MASK_GENERATORS.build(dict(type=name, **MASK_EXAMPLES[name]))
    assert isinstance(gen, MaskGeneratorProtocol) and not missing_members(gen, MaskGeneratorProtocol)
    assert isinstance(gen.context_keys, tuple) and all(isinstance(k, str) for k in gen.context_keys)


@pytest.mark.parametrize("name", sorted(TARGET_PROTOCOLS))
def test_target_implements_its_protocol_once_bound(name, teacher_file):
    target = TARGET_GENERATORS.build(target_example(name, teacher_file))
    check_plugin(target, TARGET_PROTOCOLS[name], name, ignore=("dim",))
    target.bind(MODELS.build(dict(TINY_VIT)))
    assert isinstance(target, TARGET_PROTOCOLS[name]) and isinstance(target.dim, int) and target.dim > 0
    assert isinstance(target, PixelTargetProtocol) == (TARGET_PROTOCOLS[name] is PixelTargetProtocol)


@pytest.mark.parametrize("name", CATALOGUE.algorithms())
def test_algorithm_holds_plugins_of_the_protocols_it_declares(name):
    model = build_algorithm(name)
    assert isinstance(model.encoder, type(model).encoder_protocol)
    assert isinstance(model.masking, MaskGeneratorProtocol)
    assert set(model.masking.context_keys) <= set(model.mask_context_keys)
    assert model.targets() and all(isinstance(t, TargetProtocol) for t in model.targets())


@pytest.mark.parametrize("name", sorted(ENCODER_INIT_FAMILIES))
def test_encoder_init_is_applied_by_name_and_seeded(name):
    def build(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return MODELS.build(dict(ENCODER_INIT_FAMILIES[name], init=name))

    a, b, c = build(0), build(0), build(1)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    assert any(not torch.equal(v, c.state_dict()[k]) for k, v in a.state_dict().items())


def test_each_paper_init_is_the_one_its_algorithm_registered():
    vit = MODELS.build(dict(TINY_VIT, init="bootmae")).vit
    assert vit.cls_token.abs().max() < 1e-4  # BootMAE: class token N(0, 1e-6); MAE: N(0, 0.02)
    qkv = vit.blocks[0].attn.qkv.weight  # BootMAE: Xavier over each of q, k, v ([64, 64]), not the fused [192, 64]
    assert qkv.abs().max() > (6 / (192 + 64)) ** 0.5 and qkv.abs().max() <= (6 / (64 + 64)) ** 0.5
    assert ENCODER_INITS.get("mae").__module__ == "mim_zoo.core.algorithms.mae"
    assert ENCODER_INITS.get("bootmae").__module__ == "mim_zoo.core.algorithms.bootmae"
    assert ENCODER_INITS.get("mixmim").__module__ == "mim_zoo.core.algorithms.mixmae"
    with pytest.raises(ValueError, match=r"init must be 'timm' or a registered encoder init \('bootmae', 'mae'"):
        MODELS.build(dict(TINY_VIT, init="xavier"))


# --- the check where an algorithm is built ----------------------------------------------------------------------
def test_protocol_members_are_what_the_contract_documents():
    assert protocol_members(MaskGeneratorProtocol) == ("__call__", "context_keys", "num_masked")
    assert set(protocol_members(PixelTargetProtocol)) == {"__call__", "bind", "dim", "normalize_prediction",
                                                          "update", "patch_size", "to_pixels"}
    assert {"depth", "forward_visible", "forward_masked", "forward_full"} <= set(
        protocol_members(PlainEncoderProtocol))
    assert {"embed", "encode", "forward_stages", "stage_masks", "stage_grids"} <= set(
        protocol_members(HierarchicalEncoderProtocol))


def test_a_wrong_encoder_fails_at_build_naming_every_missing_member():
    with pytest.raises(ContractError, match=r"^MixMAE's encoder ViTEncoder does not implement "
                                            r"HierarchicalEncoderProtocol \(missing encode, forward_stages, "
                                            r"stage_grids, stage_masks\)"):
        MixMAE(encoder=dict(TINY_VIT))
    with pytest.raises(ContractError, match=r"MAE's encoder MixMIMEncoder does not implement PlainEncoderProtocol "
                                            r"\(missing depth, forward_full, forward_masked, forward_visible\)"):
        MAE(encoder=dict(TINY_MIXMIM))
    with pytest.raises(ContractError, match=r"MomentumTarget's encoder MixMIMEncoder .*missing .*forward_full"):
        MomentumTarget().bind(MODELS.build(dict(TINY_MIXMIM)))


def test_a_wrong_target_or_masking_fails_at_build():
    with pytest.raises(ContractError, match=r"BootMAE's pixel_target MomentumTarget does not implement "
                                            r"PixelTargetProtocol \(missing patch_size, to_pixels\)"):
        BootMAE(encoder=dict(TINY_VIT), masking=RandomMasking(0.75), pixel_target=dict(type="MomentumTarget"))
    # (dim is checked once bind has set it)
    with pytest.raises(ContractError, match=r"MAE's target object does not implement TargetProtocol \(missing "
                                            r"__call__, bind, normalize_prediction, update; not an nn.Module\)"):
        MAE(encoder=dict(TINY_VIT), target=object())

    def just_a_function(batch_size, grid_size, **kwargs):
        return torch.zeros(batch_size, grid_size[0] * grid_size[1], dtype=torch.bool)

    with pytest.raises(ContractError, match=r"MAE's masking function .*\(missing context_keys, num_masked\)"):
        MAE(encoder=dict(TINY_VIT), masking=just_a_function)
    with pytest.raises(ContractError, match=r"MAE's decoder Linear does not implement DecoderProtocol \(missing "
                                            r"required_blocks\)"):
        MAE(encoder=dict(TINY_VIT), decoder=nn.Linear(64, 48))


def test_a_mask_generator_needing_context_the_algorithm_cannot_give_fails_at_build():
    with pytest.raises(ValueError, match=r"AttentionMasking draws its mask from \['attention'\], which MAE does not "
                                         r"compute \(its mask context: none\)"):
        MAE(encoder=dict(TINY_VIT), masking=AttentionMasking(0.75))


class StructuralMasking:
    """A mask generator that implements the protocol without subclassing mim_zoo's base class."""

    context_keys: tuple[str, ...] = ()

    def __call__(self, batch_size: int, grid_size: tuple[int, int], *, device="cpu", generator=None, **context):
        mask = torch.zeros(batch_size, grid_size[0] * grid_size[1], dtype=torch.bool, device=device)
        mask[:, ::2] = True
        return mask

    def num_masked(self, grid_size: tuple[int, int]) -> int:
        return (grid_size[0] * grid_size[1] + 1) // 2


class StructuralTarget(nn.Module):
    """A pixel target by structure only (no TargetGenerator base): raw pixels, counts its EMA updates."""

    def __init__(self) -> None:
        super().__init__()
        self.updates = 0

    def bind(self, encoder: nn.Module) -> None:
        self.patch_size = encoder.patch_size
        self.dim = 3 * self.patch_size**2

    @torch.no_grad()
    def forward(self, images: Tensor, encoder: nn.Module | None = None) -> Tensor:
        return patchify(images, self.patch_size)

    def normalize_prediction(self, pred: Tensor) -> Tensor:
        return pred

    def update(self, encoder: nn.Module, momentum: float) -> None:
        self.updates += 1

    def to_pixels(self, pred: Tensor, images: Tensor) -> Tensor:
        return pred


def test_plugins_that_only_implement_the_protocol_are_first_class(images):
    model = MAE(encoder=dict(TINY_VIT), masking=StructuralMasking(), target=StructuralTarget(),
                decoder=dict(embed_dim=32, depth=1, num_heads=4))
    losses = model(images, mode="loss")
    assert losses["stat_mask_ratio"].item() == 0.5 and torch.isfinite(losses["loss_rec"])
    assert model.targets() == [model.target]
    model.momentum_update(0.99)
    assert model.target.updates == 1
    assert model(images, mode="predict")["reconstruction"].shape == images.shape  # a pixel target: a picture


# --- one mask path --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", CATALOGUE.algorithms())
def test_resolve_mask_always_returns_the_mask(name):
    model = build_algorithm(name).eval()
    images = tiny_images(model.encoder)
    mask = model.resolve_mask(images, generator=torch.Generator().manual_seed(0))
    assert mask.dtype == torch.bool and mask.shape == (4, model.encoder.grid_size[0] * model.encoder.grid_size[1])
    assert torch.equal(mask, model.resolve_mask(images, generator=torch.Generator().manual_seed(0)))


@pytest.fixture(scope="module")
def focused_mrmae() -> MRMAE:
    cfg = prepare_config(Config.fromfile(str(REPO / "configs/mrmae/tiny_cpu.py")))
    cfg.model.masking = dict(type="AttentionMasking", ratio=0.75, mode="topk")
    cfg.model.focus_teacher = "clip"
    torch.manual_seed(0)
    return MODELS.build(cfg.model)


def count_calls(modules: dict[str, nn.Module]) -> tuple[dict[str, int], list]:
    calls = dict.fromkeys(modules, 0)
    handles = [m.register_forward_hook(lambda *_, n=n: calls.__setitem__(n, calls[n] + 1)) for n, m in modules.items()]
    return calls, handles


@pytest.mark.parametrize("explicit", [False, True])
def test_focused_mrmae_draws_its_mask_from_the_teacher_pass_that_the_loss_reuses(focused_mrmae, explicit, images):
    model = focused_mrmae.eval()  # deterministic encoder, to compare with a second loss below
    mask = RandomMasking(0.75)(4, (8, 8), generator=torch.Generator().manual_seed(1)) if explicit else None
    calls, handles = count_calls(dict(model.teachers))
    try:
        losses = model(images, mode="loss", mask=mask)
    finally:
        for handle in handles:
            handle.remove()
    assert calls == {"clip": 1, "dino": 1}  # each teacher ran once for mask and loss together
    context = model.mask_context(images)
    drawn = model.resolve_mask(images, context=context)  # topk: the most attended tokens stay visible
    kept = context["attention"].topk(16, dim=1).indices
    assert all(set((~row).nonzero().flatten().tolist()) == set(k.tolist()) for row, k in zip(drawn, kept, strict=True))
    used = mask if explicit else drawn
    coverage = (context["attention"] * ~used).sum(1) / context["attention"].sum(1)
    torch.testing.assert_close(losses["stat_focus_coverage"], coverage.mean())
    torch.testing.assert_close(losses["loss_mimic_clip"], model.loss(images, used)["loss_mimic_clip"])


def test_a_mask_context_missing_a_declared_key_is_named(images):
    class ForgetfulMAE(MAE):
        mask_context_keys = ("attention",)

    model = ForgetfulMAE(encoder=dict(TINY_VIT), masking=AttentionMasking(0.75),
                         decoder=dict(embed_dim=32, depth=1, num_heads=4))
    with pytest.raises(ValueError, match=r"ForgetfulMAE.mask_context\(\) gave no \['attention'\] for "
                                         r"AttentionMasking \(it gave \[\]\)"):
        model(images, mode="loss")
