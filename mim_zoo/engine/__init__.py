"""The engine: what runs the model core with mmengine.

Hooks (:mod:`.hooks`), data transforms (:mod:`.transforms`) and the input pipeline (:mod:`.pipeline`), config
preparation and checks, compatibility fixes and environment checks, the optimizer constructor, sharding, pictures,
the downstream benchmark runner, the catalogue of configs, recipes and paper numbers (:mod:`.catalogue`) and mmcv's
ops without a compiler (:mod:`.mmcv_ops`). Imports :mod:`mim_zoo.core`, never :mod:`mim_zoo.synthetic`; importing
this package imports none of its modules (it must not: :mod:`.mmcv_ops` is imported while ``mmcv.ops`` is being
imported, before mmcv, mmdet, mmseg or mmpretrain are ready).
"""
