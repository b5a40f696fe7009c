"""Rotations (torch): conversions between every convention cryofield meets, sampling, distances, grids."""

from cryofield.so3.grids import (
                                 grid_resolution_deg,
                                 grid_size,
                                 healpix_pix2ang_nest,
                                 shift_grid,
                                 so3_children,
                                 so3_grid,
)
from cryofield.so3.rotations import (
                                     cryosparc_pose_to_matrix,
                                     euler_to_matrix,
                                     geodesic_distance,
                                     matrix_to_cryosparc_pose,
                                     matrix_to_euler,
                                     matrix_to_quaternion,
                                     matrix_to_rotvec,
                                     matrix_to_s2s2,
                                     quaternion_to_matrix,
                                     random_rotations,
                                     rotation_about_x,
                                     rotvec_to_matrix,
                                     s2s2_to_matrix,
)

__all__ = [
    "cryosparc_pose_to_matrix", "euler_to_matrix", "geodesic_distance", "grid_resolution_deg", "grid_size",
    "healpix_pix2ang_nest", "matrix_to_cryosparc_pose", "matrix_to_euler", "matrix_to_quaternion",
    "matrix_to_rotvec", "matrix_to_s2s2", "quaternion_to_matrix", "random_rotations", "rotation_about_x",
    "rotvec_to_matrix", "s2s2_to_matrix", "shift_grid", "so3_children", "so3_grid",
]
