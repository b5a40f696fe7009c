"""Training: typed configs, one run engine for every method, checkpoints and exact resume, inference.

The engine (:class:`Trainer`) runs a :class:`Method`: :class:`NeuralVolume` (``train-nn``,
``train-vae``), :class:`Abinit` (``abinit``) and :class:`Cryofold` (``train-cryofold``).
:func:`run` and :func:`resume` take a config from start to finish; :class:`Run` opens a
finished run. The names are imported when first used (``cryofield.train.config`` alone
does not import torch).
"""

from cryofield._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "Abinit": ".abinit", "AbinitConfig": ".abinit", "Callbacks": ".engine", "Cryofold": ".cryofold",
    "CryofoldConfig": ".cryofold", "FIXED": ".config", "GraphedStep": ".graphs", "KEPT": ".config",
    "MAY_CHANGE": ".config", "Method": ".engine", "Models": ".models", "NeuralVolume": ".neural_volume",
    "RUNTIME": ".config", "Run": ".results", "RunVolumes": ".volumes", "Runtime": ".distributed",
    "TrainConfig": ".config", "Trainer": ".engine", "VaeConfig": ".config", "adam": ".checkpoint",
    "batches": ".inference", "build_models": ".models", "can_graph": ".graphs", "encode": ".objective",
    "evaluate_images": ".inference", "image_losses": ".inference", "init_runtime": ".distributed",
    "load_adam": ".checkpoint", "load_checkpoint": ".checkpoint", "load_config": ".launch",
    "load_cryofold": ".cryofold", "load_models": ".models", "method_of": ".launch", "optimizer_step": ".objective",
    "posterior_means": ".inference", "prepare": ".inputs", "read_table": ".inputs", "refine_latents": ".latents",
    "register_method": ".launch", "resolve_device": ".distributed", "resume": ".launch", "run": ".launch",
    "run_epoch": ".engine", "save_checkpoint": ".checkpoint", "setting": ".config", "step_loss": ".objective",
    "tilt_partners": ".inputs", "WeightAverage": ".averaging", "write_volumes": ".volumes",
})
