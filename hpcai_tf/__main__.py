"""``python -m hpcai_tf`` is ``hpcai``."""

import sys

from hpcai_tf.cli import main

sys.exit(main())
