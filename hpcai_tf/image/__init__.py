"""Step 2, recipes -> image: stage the build context, make the base image, build with Docker or
Apptainer/Singularity, verify, inspect, export and clean images.

May import the shared modules, :mod:`hpcai_tf.recipes` and :mod:`hpcai_tf.train.image_contract` (pure data);
nothing else of launching, scaling or training (it runs the in-image self-test as a command, never imports it).
"""
