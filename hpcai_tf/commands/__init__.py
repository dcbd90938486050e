"""Sub-commands of ``hpcai``: one module per step of the pipeline, each with ``register(subparsers)``."""
