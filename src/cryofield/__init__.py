"""cryofield: neural-field reconstruction of flexible and mixed macromolecules from cryo-EM images.

The names most notebooks need are reachable from here, imported when first used (so that
``import cryofield.io`` stays free of torch)::

    import cryofield as cf

    table = cf.read_particles("run_data.star")            # cryofield.io
    run = cf.run(cf.TrainConfig(particles="run_data.star", outdir="run", zdim=8))  # cryofield.train
    run = cf.Run("run")                                     # a finished run: z, maps, poses, losses
"""

from importlib.metadata import PackageNotFoundError, version

from cryofield._lazy import lazy_exports

try:
    __version__ = version("cryofield")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "read_particles": "cryofield.io", "write_particles": "cryofield.io", "read_map": "cryofield.io",
    "write_map": "cryofield.io", "read_indices": "cryofield.io", "WorkDir": "cryofield.io",
    "TrainConfig": "cryofield.train", "VaeConfig": "cryofield.train", "AbinitConfig": "cryofield.train",
    "CryofoldConfig": "cryofield.train", "Callbacks": "cryofield.train", "run": "cryofield.train",
    "resume": "cryofield.train", "Run": "cryofield.train", "make_toy_dataset": "cryofield.simulate.toy",
})
