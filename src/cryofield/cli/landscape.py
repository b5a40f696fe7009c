"""``cryofield landscape``: landscape analysis of a run's volume ensemble (the seed's chapter 6)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from cryofield.analysis.landscape import LandscapeSettings
from cryofield.cli._common import add_settings, command_parser, progress_bar
from cryofield.cli._latents import load_run_latents
from cryofield.errors import InputError
from cryofield.io import WorkDir, read_array

NAME = "landscape"


def add_parser(subparsers):
    parser = command_parser(subparsers, NAME, "Landscape analysis of a train-vae run's maps: a k-means sketch of the "
                            "ensemble, a mask, PCA of the masked maps (maps along each volume PC), agglomerative "
                            "clustering into states (centroid map and particle list per state), MDS and UMAP of the "
                            "sketch, and an MLP that places every particle in volume-PC space. Writes "
                            "WORKDIR/landscape/.", """
        cryofield landscape run/                                  # sketch 500, 10 states, maps at 64 px
        cryofield landscape run/ --sketch 1000 -M 20 --linkage ward
        cryofield landscape run/ --mask focus.mrc --downsample 64 -o run/landscape_focus/
        cryofield landscape run/ --phi-samples 25000              # the seed's setting (slow on a CPU)
        cryofield select particles.star --ind run/landscape/states10/state_003.ind.txt -o state3.star
        """)
    parser.add_argument("workdir", type=Path, help="a train-vae run")
    parser.add_argument("--z", type=Path, help="latents (.npy, N x zdim; default WORKDIR/z.npy)")
    parser.add_argument("-o", "--outdir", type=Path, help="default WORKDIR/landscape")
    add_settings(parser, LandscapeSettings, "sketch")
    parser.add_argument("--downsample", type=int, metavar="BOX",
                        help="render the maps at this box (default: the training box, at most 64)")
    parser.add_argument("--mask", type=Path, help="a mask map (voxels > 0.5 are analysed) instead of the automatic one")
    add_settings(parser, LandscapeSettings, "threshold", "dilate", "n_pcs", "pc_points", "states", "linkage",
                 "phi_samples", "phi_epochs", "amp")
    parser.add_argument("--labels", type=Path, help="per-particle labels to colour the landscape by (.npy or .txt)")
    add_settings(parser, LandscapeSettings, "seed")
    return parser


def run(args) -> None:
    from cryofield.analysis.landscape import landscape_analysis
    from cryofield.io import read_map
    from cryofield.reports import plot_landscape_figures
    from cryofield.train import RunVolumes
    from cryofield.train.config import flag_of

    z, rows = load_run_latents(args)
    fields = {f.name: f for f in dataclasses.fields(LandscapeSettings)}
    for name in ("sketch", "n_pcs", "pc_points", "states", "phi_epochs"):
        if getattr(args, name) < 1:
            raise InputError(args.workdir, f"{flag_of(fields[name])} must be at least 1")
    if (args.phi_samples or 0) < 0 or args.dilate < 0 or not 0 < args.threshold < 1:
        raise InputError(args.workdir, "--phi-samples and --dilate must be >= 0, --threshold between 0 and 1")
    if args.states > min(args.sketch, len(z)):
        raise InputError(args.workdir, f"-M {args.states} states from a sketch of {min(args.sketch, len(z))} maps")
    labels = None
    if args.labels is not None:
        labels = read_array(args.labels, ndim=1, rows=len(z), what="labels")
    volumes = RunVolumes(args.workdir, args.downsample or min(64, _training_box(args.workdir)))
    mask = None
    if args.mask is not None:
        mask_map, _ = read_map(args.mask)
        if mask_map.shape != (volumes.box,) * 3:
            raise InputError(args.mask, f"a {mask_map.shape[0]}^3 mask for maps of {volumes.box}^3 (use --downsample "
                                        f"{mask_map.shape[0]}, or resample the mask)")
        mask = mask_map > 0.5
        if not mask.any():
            raise InputError(args.mask, "no voxel above 0.5")
    settings = LandscapeSettings(**{f.name: getattr(args, f.name) for f in dataclasses.fields(LandscapeSettings)
                                    if hasattr(args, f.name)})
    outdir = args.outdir or WorkDir(args.workdir).landscape
    bars: dict[str, object] = {}

    def progress(stage: str, done: int, total: int) -> None:
        if stage not in bars:
            for bar in bars.values():
                bar.close()
            bars[stage] = progress_bar(total, f"maps ({stage})", unit="map")
        bars[stage].update(done - bars[stage].n)

    try:
        result = landscape_analysis(z, lambda latents: volumes(latents, amp=settings.amp), outdir,
                                     apix=volumes.apix, particle_indices=rows, mask=mask, settings=settings,
                                     progress=progress)
    finally:
        for bar in bars.values():
            bar.close()
    figures = plot_landscape_figures(outdir, labels=labels)
    summary = result.summary
    variance = ", ".join(f"{100 * v:.1f}" for v in summary["explained_variance_ratio"][:3])
    states = summary["states"]
    print(f"landscape of {len(z)} particles: sketch of {summary['sketch']} maps ({volumes.box}^3, "
          f"{volumes.apix:.3f} A/px), mask {summary['mask']['voxels']} voxels; volume PCs {variance} % of the "
          f"variance; {len(states['particles'])} states of {min(states['particles'])}-{max(states['particles'])} "
          f"particles")
    if "phi" in summary:
        r2 = ", ".join(f"{v:.2f}" for v in summary["phi"]["val_r2"][:3])
        print(f"phi (z -> volume PCs) from {summary['phi']['samples']} maps: validation R^2 of PC1-3 {r2}")
    print(f"wrote {outdir}/: maps along the volume PCs, {states['folder']}/ (state maps and index files), "
          f"z_vol_pc.npy, {len(figures)} figures")


def _training_box(workdir: Path) -> int:
    from cryofield.train import TrainConfig

    return TrainConfig.load(WorkDir(workdir).require_config()).box
