"""Particle and map I/O: RELION STAR (3.0 to 5), cryoSPARC .cs, MRC stacks, cryoDRGN files.

The entry point is :func:`read_particles`, which returns a :class:`ParticleTable`; the
export functions write any subset back in the format it came from. This layer never
imports torch.
"""

from cryofield.io.arrays import read_array, read_arrays
from cryofield.io.atoms import AtomicModel, read_atomic_model
from cryofield.io.export import export_stack, restack, write_particles
from cryofield.io.indices import read_indices
from cryofield.io.landscape import Landscape, LandscapeStates
from cryofield.io.legacy import load_legacy_pickle
from cryofield.io.maps import read_map, write_map
from cryofield.io.mrc import MrcStack, MrcStackWriter, write_mrc
from cryofield.io.readers import read_particles
from cryofield.io.results import (
    ClusterSet,
    LatentAnalysis,
    LatentPath,
    numbered_map,
    numbered_maps,
)
from cryofield.io.star import StarBlock, read_star, write_star
from cryofield.io.table import ImageRefs, ParticleTable, SourceRecord
from cryofield.io.workdir import WorkDir

__all__ = [
    "AtomicModel", "ClusterSet", "ImageRefs", "Landscape", "LandscapeStates", "LatentAnalysis", "LatentPath",
    "MrcStack", "MrcStackWriter", "ParticleTable", "SourceRecord", "StarBlock", "WorkDir", "export_stack",
    "load_legacy_pickle", "numbered_map", "numbered_maps", "read_array", "read_arrays", "read_atomic_model",
    "read_indices", "read_map", "read_particles", "read_star", "restack", "write_map", "write_mrc",
    "write_particles", "write_star",
]
