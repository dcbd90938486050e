"""hpcai: a container-first reproducibility kit for distributed deep learning on HPC clusters."""

__version__ = "0.1.0"
