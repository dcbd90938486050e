"""Step 1 of the pipeline, catalog -> recipes: render a site's Dockerfile, Singularity definition and provenance,
resolve its pip constraints, and write derived recipes FROM a base image.

May import the shared top-level modules only (``catalog``, ``errors``, ``files``, ``paths``), and of ``train/``
exactly :mod:`hpcai_tf.train.image_contract` (what an image holds and where); nothing of the later steps. Tested by
``tests/test_import_layers.py``.
"""
