"""``cryofield abinit``: a volume and every particle's pose from the images alone."""

from __future__ import annotations

from pathlib import Path

from cryofield.cli._common import add_input_arguments
from cryofield.cli._train import (
    add_decoder_arguments,
    add_step_arguments,
    config_values,
    remember_defaults,
    run_trainer,
)
from cryofield.io import WorkDir

NAME = "abinit"


def add_parser(subparsers):
    from cryofield.cli._common import command_parser

    parser = command_parser(subparsers, NAME, "Ab initio reconstruction: train a neural volume (or, with --zdim, "
                            "a VAE over volumes) while searching each particle's rotation and shift on "
                            "multi-resolution grids over SO(3) x R^2 (cryoDRGN2's schedule with the model reset). "
                            "Writes poses.star for RELION or train-vae, the map after each stage, and z.npy for "
                            "heterogeneous runs.", """
        cryofield abinit particles.star -o run/                         # 30 + 30 (reset) + 30 epochs
        cryofield abinit particles.star -o run/ --zdim 8                # heterogeneous
        cryofield abinit untilted.star --tilt tilted.star --tilt-deg 45 -o run/   # tilt pairs
        cryofield abinit particles.mrcs --ctf ctf.pkl -o run/ --no-reset --epochs-search 30
        cryofield abinit particles.star -o run/ --kmax 32 --base-level 1   # coarser, faster search
        cryofield abinit particles.star -o run/ --resume                 # continue after the last checkpoint
        cryofield abinit particles.star -o gd/ --method gd --epochs-search 200 -b 512   # a baseline
        """)
    add_input_arguments(parser)
    parser.add_argument("-o", "--outdir", type=Path, required=True, help="work directory")
    parser.add_argument("--ind", type=Path, help="reconstruct from these particles only (.npy, .txt or .pkl)")
    parser.add_argument("--uninvert-data", action="store_true", help="do not flip the data's contrast")
    parser.add_argument("--window-r", type=float, default=0.85, help="soft real-space window radius (default 0.85)")
    model = parser.add_argument_group("model")
    model.add_argument("--zdim", type=int, default=0, help="latent dimension: 0 for one volume (default), more "
                       "for a heterogeneous VAE")
    model.add_argument("--enc-dim", type=int, default=256, help="encoder width (default 256)")
    model.add_argument("--enc-layers", type=int, default=3, help="encoder residual layers (default 3)")
    model.add_argument("--beta", type=float, help="KL weight (default 1/zdim)")
    model.add_argument("--tilt", type=Path, help="tilted partner of each particle (.star/.cs/.mrcs), same order: "
                       "poses are searched on both images together")
    model.add_argument("--tilt-deg", type=float, default=45.0, help="stage tilt about x in degrees (default 45)")
    add_decoder_arguments(model)
    schedule = parser.add_argument_group("schedule (cryoDRGN2 +r)")
    schedule.add_argument("--epochs-search", type=int, default=30,
                          help="stage 1: epochs with pose search, the first on random poses (default 30)")
    schedule.add_argument("--epochs-fixed", type=int, default=30,
                          help="stage 2: reset the model, train on the last poses (default 30)")
    schedule.add_argument("--epochs-refine", type=int, default=30,
                          help="stage 3: epochs with pose search again (default 30)")
    schedule.add_argument("--no-reset", action="store_true", help="stage 1 only (same as --epochs-fixed 0 "
                          "--epochs-refine 0)")
    schedule.add_argument("--search-every", type=int, default=5, help="search poses every N epochs (default 5)")
    schedule.add_argument("--kmax-ramp-epochs", type=int, default=25,
                          help="epochs over which the search's band limit grows from --kmin to --kmax (default 25)")
    search = parser.add_argument_group("pose search (defaults: the seed's table 5.5; for bnb its section 3.4.1)")
    search.add_argument("--method", choices=["hps", "bnb", "gd", "pose-vae"], default="hps",
                        help="hps: hierarchical pose search (cryoDRGN2, default); bnb: branch and bound with "
                             "frequency marching (cryoDRGN-BNB), for comparison; the baselines of the seed's "
                             "table 5.2, one stage of --epochs-search epochs: gd (gradient descent on poses from "
                             "random starts, step --pose-lr) and pose-vae (an encoder predicts each rotation)")
    search.add_argument("--pose-lr", type=float, default=1e-3,
                        help="gd: step size of the rotations (radians) and shifts (px) (default 1e-3)")
    search.add_argument("--base-level", type=int,
                        help="SO(3) base grid: 1 = 576 rotations (30 deg; bnb default), 2 = 4,608 (15 deg; hps "
                             "default), 3 = 36,864")
    search.add_argument("--keep", type=int, default=8, help="K: rotations kept per round (default 8)")
    search.add_argument("--rounds", type=int, help="M: refinement rounds (default 4; bnb: subdivisions, 5)")
    search.add_argument("--kmin", type=float, default=12, help="band limit of the base search, Fourier px (default 12)")
    search.add_argument("--kmax", type=float, default=48, help="band limit of the last round, capped at D/2 "
                        "(default 48)")
    search.add_argument("--n-shifts", type=int, help="T: translation grid T x T (default 14; bnb 7)")
    search.add_argument("--shift-extent", type=float, help="translation grid half-width in px (default 20 * D / 128)")
    search.add_argument("--oversample", type=float, default=2.0,
                        help="model lattice points per Fourier pixel for slice interpolation (default 2)")
    search.add_argument("--search-batch", type=int, default=32, help="images searched at a time (default 32)")
    search.add_argument("--search-chunk", type=int, default=256,
                        help="online search: render the model every N particles and train on each chunk right "
                             "after searching it, as cryoDRGN does per batch (default 256; 0: all particles "
                             "against one model, which converges far worse)")
    search.add_argument("--search-groups", type=int, default=1,
                        help="--zdim: search each chunk against the model at its mean latent (1, the default), or "
                             "at this many k-means centres of its latents (one render each; converged far worse "
                             "in our tests)")
    run = parser.add_argument_group("training")
    add_step_arguments(run)
    run.add_argument("--resume", action="store_true",
                     help="continue the run in OUTDIR from its last checkpoint, with its own settings")
    run.add_argument("--seed", type=int, default=0)
    return remember_defaults(parser)


def run(args) -> None:
    from cryofield.reports import plot_viewing_directions
    from cryofield.train import AbinitConfig

    if args.no_reset or args.method in ("gd", "pose-vae"):  # the baselines run one stage
        args.epochs_fixed = args.epochs_refine = 0
    values, changes = config_values(args, AbinitConfig, {"shift_extent_px": "shift_extent"}, poses=None)
    config = None if args.resume else AbinitConfig(**values)

    def poses_found(epoch: int, poses) -> None:
        path = WorkDir(args.outdir).direction_plot(epoch)
        path.parent.mkdir(parents=True, exist_ok=True)
        plot_viewing_directions(path, poses.rotations.numpy(),
                                title=f"Viewing directions after the search of epoch {epoch + 1}")

    def describe(record: dict) -> str:
        searched = (f", searched in {record['search_seconds']:.0f} s (k < {record['search_kmax']:g}, median change "
                    f"{record['pose_change_deg_median']:.1f} deg)") if "search_seconds" in record else ""
        return (f"epoch {record['epoch'] + 1} (stage {record['stage']}{', reset' if record.get('reset') else ''}): "
                f"mse {record['mse']:.5f}, high-frequency gradient {record['grad_high']:.2e}{searched}")

    run_trainer(args, config, changes, describe, label=lambda epoch, what, n: f"epoch {epoch + 1}/{n} {what}",
                poses_found=poses_found)
