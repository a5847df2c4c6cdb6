"""The engine: what runs the model core with mmengine.

Hooks (:mod:`.hooks`), data transforms (:mod:`.transforms`) and the input pipeline (:mod:`.pipeline`), config
preparation and checks, compatibility fixes and environment checks, the optimizer constructor, sharding, pictures,
the downstream benchmark runner, and the catalogue of configs, recipes and paper numbers (:mod:`.catalogue`).
Imports :mod:`mim_zoo.core`, never
:mod:`mim_zoo.synthetic`; importing this package imports none of its modules.
"""
