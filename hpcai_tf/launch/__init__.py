"""Step 3, image -> job: plan and render a scheduler's job script (Slurm, LSF with jsrun resource sets), submit
it, follow job states, and submit one job per rank count for a scaling study.

May import the shared modules, the image names of :mod:`hpcai_tf.recipes`, and from :mod:`hpcai_tf.train` only
the package itself (the names of the workloads).
"""
