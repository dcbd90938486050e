"""The training package that runs inside every image: three workloads, data-parallel with Horovod or MWMS.

Nothing here knows about sites, recipes or launchers on the host side; it reads its configuration from
``configs/<workload>.toml``, the command line and the environment the launcher set.
"""

from hpcai_tf.train.options import BACKENDS, DEFAULT_BACKEND, JOB_SCRIPT_FLAGS, set_by_job_script

WORKLOADS = ("resnet50", "gw", "des")

__all__ = ["BACKENDS", "DEFAULT_BACKEND", "JOB_SCRIPT_FLAGS", "WORKLOADS", "set_by_job_script"]
