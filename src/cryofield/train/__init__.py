"""Training neural volumes: typed configs, the loop with checkpoints and resume, devices and processes, evaluation."""

from cryofield.train.config import TrainConfig
from cryofield.train.distributed import Runtime, init_runtime, resolve_device
from cryofield.train.latents import refine_latents
from cryofield.train.loop import (
    GraphedStep,
    Models,
    build_models,
    evaluate_images,
    image_losses,
    load_models,
    posterior_means,
    train,
)
from cryofield.train.volumes import RunVolumes, write_volumes

__all__ = ["GraphedStep", "Models", "RunVolumes", "Runtime", "TrainConfig", "build_models", "evaluate_images",
           "image_losses", "init_runtime", "load_models", "posterior_means", "refine_latents", "resolve_device",
           "train", "write_volumes"]
