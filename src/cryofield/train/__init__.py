"""Training neural volumes: typed configs, the loop with checkpoints and resume, evaluation."""

from cryofield.train.config import TrainConfig
from cryofield.train.loop import Models, build_models, evaluate_images, load_models, posterior_means, train

__all__ = ["Models", "TrainConfig", "build_models", "evaluate_images", "load_models", "posterior_means", "train"]
