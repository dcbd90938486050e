"""The generated documentation: a tutorial page per site and the stack table, from the catalog and the rendered
recipes.

May import the shared modules, :mod:`hpcai_tf.recipes`, :mod:`hpcai_tf.image` (what stops a build here) and
:mod:`hpcai_tf.launch`; of :mod:`hpcai_tf.train` only its pure-data :mod:`hpcai_tf.train.image_contract`.
"""
