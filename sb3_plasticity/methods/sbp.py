"""Old module path of :mod:`sb3_plasticity.methods.cycle_reset_distill` (SBP / P3O, ``CycleResetDistillCallback``).

Each method has one name across its class, file and log tags; this file is kept so that user code importing
``sb3_plasticity.methods.sbp`` keeps working: it is the same module object.
"""

import sys

from sb3_plasticity.methods import cycle_reset_distill

sys.modules[__name__] = cycle_reset_distill
