"""``python -m sb3_plasticity.experiments``: the same as the ``sb3-plasticity`` command."""

import sys

from sb3_plasticity.experiments.cli import main

sys.exit(main())
