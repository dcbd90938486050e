"""Data for the three workloads: generators (lalsuite, GalSim, ImageNet conversion), ``tf.data`` readers."""
