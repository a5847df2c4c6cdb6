"""Registries: children of mmengine's, explicit registration, loud failure on unknown names."""

import pytest
import torch
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import TASK_UTILS

import mim_zoo
from mim_zoo.registry import MASK_GENERATORS, MODELS, TARGET_GENERATORS, UnknownPluginError, build, registered_names


def test_registries_are_children_of_mmengines_in_the_mim_zoo_scope():
    assert MODELS.parent is MMENGINE_MODELS and MODELS.scope == "mim_zoo"
    assert MASK_GENERATORS.parent is TASK_UTILS and MASK_GENERATORS.scope == "mim_zoo"
    assert TARGET_GENERATORS.parent is MODELS  # mmengine allows one "mim_zoo" child per root
    assert MMENGINE_MODELS.get("mim_zoo.MAE") is mim_zoo.core.algorithms.MAE


def test_import_registers_the_core_plugins():
    assert {"MAE", "MAEDecoder", "ViTEncoder"} <= set(registered_names(MODELS))
    assert {"RandomMasking", "BlockMasking", "MixingMask"} <= set(registered_names(MASK_GENERATORS))
    assert {"PixelTarget", "MomentumTarget", "TeacherTarget"} <= set(registered_names(TARGET_GENERATORS))


def test_unknown_names_list_what_is_registered():
    with pytest.raises(UnknownPluginError) as err:
        TARGET_GENERATORS.build(dict(type="PixelTargets"))
    assert "Did you mean 'PixelTarget'" in str(err.value) and "MomentumTarget" in str(err.value)
    with pytest.raises(UnknownPluginError, match="Registered: .*MAE"):
        MODELS.build(dict(type="NoSuchAlgorithm", encoder={}))


def test_types_may_be_names_classes_or_module_paths_and_objects_pass_through():
    by_name = MASK_GENERATORS.build(dict(type="RandomMasking", ratio=0.5))
    by_class = MASK_GENERATORS.build(dict(type=mim_zoo.core.masking.RandomMasking, ratio=0.5))
    by_path = MASK_GENERATORS.build(dict(type="mim_zoo.core.masking.RandomMasking", ratio=0.5))
    assert type(by_name) is type(by_class) is type(by_path)
    assert build(MASK_GENERATORS, by_name) is by_name
    with pytest.raises(TypeError, match="'type' key"):
        MASK_GENERATORS.build(dict(ratio=0.5))


def test_building_ignores_the_runners_default_scope():
    """The Runner sets default_scope='mim_zoo'; target generators must still be found among targets."""
    from mmengine.registry import DefaultScope

    with DefaultScope.overwrite_default_scope("mim_zoo"):
        target = TARGET_GENERATORS.build(dict(type="PixelTarget"))
    assert isinstance(target, torch.nn.Module)
