"""``cryofield abinit``: a volume and every particle's pose from the images alone."""

from __future__ import annotations

from cryofield.cli._common import add_input_arguments
from cryofield.cli._train import (
    DECODER,
    STEP,
    add_resume_argument,
    add_settings,
    config_values,
    remember_defaults,
    run_trainer,
)
from cryofield.io import WorkDir

NAME = "abinit"


def add_parser(subparsers):
    from cryofield.cli._common import command_parser
    from cryofield.train import AbinitConfig

    parser = command_parser(subparsers, NAME, "Ab initio reconstruction: train a neural volume (or, with --zdim, "
                            "a VAE over volumes) while searching each particle's rotation and shift on "
                            "multi-resolution grids over SO(3) x R^2, then (cryoDRGN-AI's schedule, the default) "
                            "refining every pose as a row of a table trained with the volume. Writes poses.star "
                            "for RELION or train-vae, the map after each stage, and z.npy for heterogeneous runs.",
                            """
        cryofield abinit particles.star -o run/                         # pretrain, 3 searches, 27 table epochs
        cryofield abinit particles.star -o run/ --schedule search       # cryoDRGN2: 30 + 30 (reset) + 30 epochs
        cryofield abinit particles.star -o run/ --zdim 8                # heterogeneous
        cryofield abinit particles.star -o run/ --zdim 8 --z-table      # cryoDRGN-AI's latents
        cryofield abinit untilted.star --tilt tilted.star --tilt-deg 45 -o run/   # tilt pairs
        cryofield abinit particles.mrcs --ctf ctf.pkl -o run/ --no-reset --epochs-search 30
        cryofield abinit particles.star -o run/ --kmax 32 --base-level 1   # coarser, faster search
        cryofield abinit big.star -o run/ --lazy --buffer-size 16384     # read the images as needed
        cryofield abinit particles.star -o run/ --resume                 # continue after the last checkpoint
        cryofield abinit particles.star -o gd/ --method gd --epochs-search 200 -b 512   # a baseline
        """)
    config = AbinitConfig
    add_input_arguments(parser)
    add_settings(parser, config, "outdir", "ind", "uninvert_data", "window_r")
    model = parser.add_argument_group("model")
    add_settings(model, config, "zdim", "enc_dim", "enc_layers", "z_table", "z_table_kl", "z_lr", "beta", "tilt",
                 "tilt_deg", *DECODER)
    schedule = parser.add_argument_group("schedule (search: cryoDRGN2 +r; table: cryoDRGN-AI)")
    add_settings(schedule, config, "schedule", "epochs_search", "epochs_fixed", "epochs_refine", "pretrain_images",
                 "epochs_table", "train_band")
    schedule.add_argument("--no-reset", action="store_true", help="search schedule, stage 1 only (same as "
                          "--epochs-fixed 0 --epochs-refine 0)")
    add_settings(schedule, config, "search_every", "kmax_ramp_epochs")
    search = parser.add_argument_group("pose search (defaults: the seed's table 5.5; for bnb its section 3.4.1)")
    add_settings(search, config, "method", "pose_lr", "base_level", "keep", "rounds", "kmin", "kmax", "n_shifts",
                 "shift_extent_px", "oversample", "search_batch", "search_chunk", "search_groups")
    run = parser.add_argument_group("training")
    add_settings(run, config, *STEP, "lazy", "buffer_size", "table_storage")
    add_resume_argument(run, "continue the run in OUTDIR from its last checkpoint, with its own settings")
    add_settings(run, config, "seed")
    return remember_defaults(parser)


def run(args) -> None:
    from cryofield.reports import plot_abinit_convergence, plot_viewing_directions
    from cryofield.train import AbinitConfig

    if args.no_reset or args.method in ("gd", "pose-vae"):  # the baselines run one stage
        args.epochs_fixed = args.epochs_refine = 0
    values, changes = config_values(args, AbinitConfig, poses=None)
    config = None if args.resume else AbinitConfig(**values)

    def poses_found(epoch: int, poses) -> None:
        path = WorkDir(args.outdir).direction_plot(epoch)
        path.parent.mkdir(parents=True, exist_ok=True)
        plot_viewing_directions(path, poses.rotations.numpy(),
                                title=f"Viewing directions after the search of epoch {epoch + 1}")

    def plot_convergence(record: dict) -> None:
        workdir = WorkDir(args.outdir)
        plot_abinit_convergence(workdir.convergence_plot, workdir.read_log())

    def describe(record: dict) -> str:
        moved = (f", {100 * record['pose_moved_fraction']:.0f} % moved > 5 deg"
                 if "pose_moved_fraction" in record else "")
        searched = (f", searched in {record['search_seconds']:.0f} s (k < {record['search_kmax']:g}, median change "
                    f"{record['pose_change_deg_median']:.1f} deg{moved})") if "search_seconds" in record else ""
        if "pretrain_images" in record:
            searched = f", pretrained on {record['pretrain_images']} images at random poses"
        elif "pose_change_deg_median" in record and not searched:
            searched = (f", pose table{' started' if record.get('table_start') else ''}: median change "
                        f"{record['pose_change_deg_median']:.2f} deg{moved}")
        band = f", decoder fit at k < {record['train_band_px']:g}" if "train_band_px" in record else ""
        if "reconstruction_angstrom" in record:
            searched += (f"; map from the poses: {record['reconstruction_angstrom']:.2f} A at half-map FSC 0.143 "
                         f"({record['reconstruction_seconds']:.0f} s)")
        return (f"epoch {record['epoch'] + 1} (stage {record['stage']}{', reset' if record.get('reset') else ''}): "
                f"mse {record['mse']:.5f}{band}, high-frequency gradient {record['grad_high']:.2e}{searched}")

    run_trainer(args, config, changes, describe, label=lambda epoch, what, n: f"epoch {epoch + 1}/{n} {what}",
                poses_found=poses_found, after_epoch=plot_convergence)
