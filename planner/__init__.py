"""planner: choose how to partition a Transformer across accelerator chips for inference.

Implements the analytical model of Pope et al., "Efficiently Scaling Transformer Inference" (2022).
"""

__version__ = "0.2.0"
