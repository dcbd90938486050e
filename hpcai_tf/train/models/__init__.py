"""Keras models of the three workloads; every layer is named, so checkpoints match variables by name."""
