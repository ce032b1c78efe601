"""Neuron analyses of the GraMa paper, to run on your own SB3 model (``docs/analysis.md``).

- Fig. 3, quadrants of activation vs gradient score and which ones ReDo resets: :class:`QuadrantAnalysisCallback`,
  :func:`quadrant_analysis`;
- Fig. 7, pruning the neurons GraMa vs ReDo flags and measuring the return: :func:`prune_and_evaluate`;
- Fig. 6, low learning capacity is irreversible (:class:`IrreversibilityCallback`) and costs performance
  (:func:`performance_vs_inactive`);
- NE paper Fig. 11, heat maps of the per-layer |dL/dW| of a training pass: :class:`GradientHeatmapCallback`.
"""

from sb3_plasticity.analysis.base import TrainingPassAnalysisCallback
from sb3_plasticity.analysis.heatmap import GradientHeatmapCallback, save_heatmap_png
from sb3_plasticity.analysis.irreversibility import (
    IrreversibilityCallback,
    IrreversibilityTracker,
    PerformanceVsInactive,
    final_value,
    performance_vs_inactive,
    read_tensorboard_scalars,
)
from sb3_plasticity.analysis.pruning import PruningResult, flagged_neurons, masked_neurons, prune_and_evaluate
from sb3_plasticity.analysis.quadrants import (
    QUADRANTS,
    QuadrantAnalysisCallback,
    QuadrantReport,
    quadrant_analysis,
    quadrant_labels,
    quadrant_shares,
    top_mask,
)
from sb3_plasticity.analysis.scores import (
    NeuronScores,
    acting_networks,
    activation_scores,
    restored,
    scores_from_records,
    training_pass_scores,
)

__all__ = [
    "QUADRANTS",
    "GradientHeatmapCallback",
    "IrreversibilityCallback",
    "IrreversibilityTracker",
    "NeuronScores",
    "PerformanceVsInactive",
    "PruningResult",
    "QuadrantAnalysisCallback",
    "QuadrantReport",
    "TrainingPassAnalysisCallback",
    "acting_networks",
    "activation_scores",
    "final_value",
    "flagged_neurons",
    "masked_neurons",
    "performance_vs_inactive",
    "prune_and_evaluate",
    "quadrant_analysis",
    "quadrant_labels",
    "quadrant_shares",
    "read_tensorboard_scalars",
    "restored",
    "save_heatmap_png",
    "scores_from_records",
    "top_mask",
    "training_pass_scores",
]
