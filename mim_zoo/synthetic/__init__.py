"""Synthetic data and random teachers for tests, the tiny configs and the quickstart: never a real result.

* :mod:`.shapes`: the embedded pretraining dataset (procedural shapes as JPEGs in ImageNet's folder layout);
* :mod:`.toy_data`: tiny ADE20K / COCO datasets in their real on-disk formats (the downstream CPU twins);
* :mod:`.teachers`: randomly initialised teacher files in the OpenAI CLIP and DINO layouts;
* :mod:`.photos`: photograph-like JPEGs of ImageNet's size distribution (the input-pipeline benchmark and tests).

Configs ask for them through ``synthetic_data`` (run by :func:`mim_zoo.engine.config.prepare_config`).
"""
