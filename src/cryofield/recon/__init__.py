"""Voxel reconstruction of a particle table: backprojection with half maps and their FSC."""

from cryofield.recon.backproject import VoxelReconstruction, backproject_table

__all__ = ["VoxelReconstruction", "backproject_table"]
