"""Tier 2 of mim_zoo: what runs models (hooks, transforms, config preparation, compatibility, environment checks,
optimisers, sharding, visualisation, the downstream benchmark runner, mmcv's ops without a compiler).

Kept free of imports: :mod:`mim_zoo.engine.mmcv_ops` is imported while ``mmcv.ops`` is being imported, so importing
this package must not import mmcv, mmdet, mmseg or mmpretrain.
"""
