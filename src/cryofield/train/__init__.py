"""Training: typed configs, one run engine for every method, checkpoints and exact resume, inference.

The engine (:class:`Trainer`) runs a :class:`Method`: :class:`NeuralVolume` (``train-nn``,
``train-vae``), :class:`Abinit` (``abinit``) and :class:`Cryofold` (``train-cryofold``).
:func:`run` and :func:`resume` take a config from start to finish; :class:`Run` opens a
finished run.
"""

from cryofield.train.abinit import Abinit, AbinitConfig
from cryofield.train.checkpoint import adam, load_adam, load_checkpoint, save_checkpoint
from cryofield.train.config import FIXED, KEPT, MAY_CHANGE, RUNTIME, TrainConfig, setting
from cryofield.train.cryofold import Cryofold, CryofoldConfig, load_cryofold
from cryofield.train.distributed import Runtime, init_runtime, resolve_device
from cryofield.train.engine import Callbacks, Method, Trainer, run_epoch
from cryofield.train.graphs import GraphedStep, can_graph
from cryofield.train.inference import batches, evaluate_images, image_losses, posterior_means
from cryofield.train.inputs import prepare, read_table, tilt_partners
from cryofield.train.latents import refine_latents
from cryofield.train.models import Models, build_models, load_models
from cryofield.train.neural_volume import NeuralVolume
from cryofield.train.objective import encode, optimizer_step, step_loss
from cryofield.train.results import Run
from cryofield.train.run import load_config, method_of, resume, run
from cryofield.train.volumes import RunVolumes, write_volumes

__all__ = [
    "FIXED", "KEPT", "MAY_CHANGE", "RUNTIME", "Abinit", "AbinitConfig", "Callbacks", "Cryofold", "CryofoldConfig",
    "GraphedStep", "Method", "Models", "NeuralVolume", "Run", "RunVolumes", "Runtime", "TrainConfig", "Trainer",
    "adam", "batches", "build_models", "can_graph", "encode", "evaluate_images", "image_losses", "init_runtime",
    "load_adam", "load_checkpoint", "load_config", "load_cryofold", "load_models", "method_of", "optimizer_step",
    "posterior_means", "prepare", "read_table", "refine_latents", "resolve_device", "resume", "run", "run_epoch",
    "save_checkpoint", "setting", "step_loss", "tilt_partners", "write_volumes",
]
