"""Layer 6: the methods, one file each, as SB3 callbacks."""

from sb3_plasticity.methods.base import PlasticityCallback
from sb3_plasticity.methods.monitor import PlasticityMonitorCallback

__all__ = ["PlasticityCallback", "PlasticityMonitorCallback"]
