"""Step 5, runs -> decisions: speedup and efficiency reports, the performance model, cloud-equivalent cost and the
models' sizes.

May import the shared modules and :mod:`hpcai_tf.train` (to size the real models); nothing of recipes, images or
launching.
"""
