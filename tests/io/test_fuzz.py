"""Reader fuzz test (issue 23, item 2): mutated copies of the real files in ``shared/data``.

Each copy has bytes flipped, cut, duplicated or deleted, or (text files) lines and fields
removed, swapped or replaced by hostile values. Reading it must either succeed or raise
:class:`InputError`: never another exception, never a hang (a per-file time limit), never an
attempt to allocate what the file only claims to hold. Seeded; ``CRYOFIELD_FUZZ=N`` runs N
copies instead of the default (``make faults`` runs 20000).
"""

from __future__ import annotations

import os
import signal
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cryofield.errors import InputError
from cryofield.io import MrcStack, load_legacy_pickle, read_atomic_model, read_map, read_particles, read_star

CASES = int(os.environ.get("CRYOFIELD_FUZZ", "3000"))
SEED = int(os.environ.get("CRYOFIELD_FUZZ_SEED", "23"))
SECONDS_PER_FILE = 10.0
HOSTILE_FIELDS = ["nan", "inf", "-inf", "-1", "0", "", "1e400", "abc", "@", "-0", "99999999999999999999",
                  "000001@", "@x.mrcs", "../../x.mrcs", "1@/dev/zero", "-5@particles.mrcs", "_rlnImageName"]


class Hang(Exception):
    """A read that ran past the time limit."""


def _particles(path: Path, original: Path) -> None:
    table = read_particles(path, datadir=original.parent)
    table.check_images()
    _ = table.rotations, table.shifts_px, table.ctf_array()
    table.images(np.unique([0, len(table) - 1]))


def _stack(path: Path, original: Path) -> None:
    stack = MrcStack.open(path)
    stack.read(np.unique([0, len(stack) - 1]))


def _map(path: Path, original: Path) -> None:
    read_map(path)


def _pickle(path: Path, original: Path) -> None:
    load_legacy_pickle(path)


def _model(path: Path, original: Path) -> None:
    read_atomic_model(path)


def _star(path: Path, original: Path) -> None:
    read_star(path)


@dataclass(frozen=True)
class Target:
    relative: str
    read: object
    text: bool


TARGETS = [
    Target("relion/relion31.star", _particles, True),
    Target("relion/relion30_PfCRT.star", _particles, True),
    Target("relion/relion5.star", _particles, True),
    Target("relion/relion31_6opticsgroups.star", _particles, True),
    Target("empiar10076/empiar_10076_7.star", _particles, True),
    Target("empiar10076/empiar_10076_7.cs", _particles, False),
    Target("cryosparc/cryosparc_P12_J24_001_particles.cs", _particles, False),
    Target("tilt/sta_testing_bin8.star", _particles, True),
    Target("tomo/m_warp/M_particles_sub10.star", _particles, True),
    Target("tomo/relion5/Polish/job070/tomograms.star", _star, True),
    Target("tomo/relion5/Polish/job070/tilt_series/TS_01.star", _star, True),
    Target("empiar10076/empiar_10076_7.mrc", _stack, False),
    Target("relion/relion31.mrcs", _stack, False),
    Target("tomo/m_warp/tilts/00256_Ribosomes_1.70A.mrcs", _stack, False),
    Target("maps/EMD-3197.map", _map, False),
    Target("maps/50S-vol-float16.mrc", _map, False),
    Target("particles/hand_rot_legacy.pkl", _pickle, False),
    Target("particles/ctf_legacy_1000.pkl", _pickle, False),
    Target("pdb/1ake_closed.pdb", _model, True),
]


def mutate(data: bytes, text: bool, rng: np.random.Generator) -> tuple[bytes, str]:
    """One random mutation of ``data``, and its description."""
    n = len(data)
    choices = ["flip", "flip-header", "cut", "duplicate", "delete"] + (["line", "field"] * 2 if text else [])
    kind = choices[rng.integers(len(choices))]
    if kind in ("flip", "flip-header"):
        raw = bytearray(data)
        span = min(n, 1024) if kind == "flip-header" else n
        for at in rng.integers(0, span, size=rng.integers(1, 9)):
            raw[at] = int(rng.integers(256))
        return bytes(raw), kind
    if kind == "cut":
        at = int(rng.integers(0, n))
        return data[:at], f"cut at {at}"
    a, b = sorted(int(x) for x in rng.integers(0, n, size=2))
    if kind == "duplicate":
        at = int(rng.integers(0, n))
        return data[:at] + data[a:b] + data[at:], f"duplicate {a}:{b} at {at}"
    if kind == "delete":
        return data[:a] + data[b:], f"delete {a}:{b}"
    lines = data.decode("utf-8", "replace").split("\n")
    i, j = (int(x) for x in rng.integers(0, len(lines), size=2))
    if kind == "line":
        how = ["remove", "swap", "repeat"][rng.integers(3)]
        if how == "remove":
            del lines[i]
        elif how == "swap":
            lines[i], lines[j] = lines[j], lines[i]
        else:
            lines.insert(j, lines[i])
        return "\n".join(lines).encode(), f"{how} line {i + 1}"
    fields = lines[i].split()
    if not fields:
        return data, "no change"
    k = int(rng.integers(len(fields)))
    how = ["remove", "swap", "replace"][rng.integers(3)]
    if how == "remove":
        del fields[k]
    elif how == "swap":
        m = int(rng.integers(len(fields)))
        fields[k], fields[m] = fields[m], fields[k]
    else:
        fields[k] = HOSTILE_FIELDS[rng.integers(len(HOSTILE_FIELDS))]
    lines[i] = " ".join(fields)
    return "\n".join(lines).encode(), f"{how} field {k + 1} of line {i + 1}"


def _raise_hang(signum, frame):
    raise Hang()


def fuzz(data_dir: Path, folder: Path, cases: int, seed: int) -> tuple[dict, list[str]]:
    """Read ``cases`` mutated files; the outcome counts and a line per failure."""
    rng = np.random.default_rng(seed)
    targets = [t for t in TARGETS if (data_dir / t.relative).is_file()]
    originals = {t.relative: (data_dir / t.relative).read_bytes() for t in targets}
    counts = {"read": 0, "InputError": 0}
    failures = []
    previous = signal.signal(signal.SIGALRM, _raise_hang)
    try:
        for case in range(cases):
            target = targets[case % len(targets)]
            original = data_dir / target.relative
            data, how = mutate(originals[target.relative], target.text, rng)
            path = folder / original.name
            path.write_bytes(data)
            signal.setitimer(signal.ITIMER_REAL, SECONDS_PER_FILE)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    target.read(path, original)
                counts["read"] += 1
            except InputError:
                counts["InputError"] += 1
            except Hang:
                failures.append(f"case {case}: {target.relative} ({how}): no answer in {SECONDS_PER_FILE:.0f} s")
            except Exception as exc:  # the point of the test: anything else is a bug
                failures.append(f"case {case}: {target.relative} ({how}): {type(exc).__name__}: {exc}"[:300])
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
    finally:
        signal.signal(signal.SIGALRM, previous)
    return counts, failures


def test_mutated_real_files_read_or_raise_input_error(data, tmp_path):
    start = time.perf_counter()
    counts, failures = fuzz(data, tmp_path, CASES, SEED)
    seconds = time.perf_counter() - start
    print(f"\nfuzz: {CASES} mutated files (seed {SEED}) in {seconds:.1f} s: {counts['read']} read, "
          f"{counts['InputError']} InputError, {len(failures)} other")
    assert not failures, f"{len(failures)} of {CASES}:\n" + "\n".join(failures[:20])
    assert counts["read"] and counts["InputError"]  # both paths taken: the mutations bite and spare


def test_the_mutations_are_seeded():
    rng_a, rng_b = np.random.default_rng(5), np.random.default_rng(5)
    data = b"data_particles\nloop_\n_rlnImageName #1\n1@a.mrcs\n" * 3
    assert [mutate(data, True, rng_a) for _ in range(20)] == [mutate(data, True, rng_b) for _ in range(20)]



def test_mutated_cryosparc_result_groups_read_or_raise_input_error(data, tmp_path):
    """A `.csg` and its passthrough table, mutated: the `.cs` that the group lists, and the group itself, read or
    raise InputError."""
    from numpy.lib.recfunctions import repack_fields

    real = np.load(data / "cryosparc/cryosparc_P12_J24_001_particles.cs")

    def fields(prefixes):
        return repack_fields(real[["uid", *[f for f in real.dtype.names if f.split("/")[0] in prefixes]]])

    with open(tmp_path / "J1_particles.cs", "wb") as fh:
        np.save(fh, fields({"blob", "alignments3D"}))
    passthrough = tmp_path / "J1_passthrough_particles.cs"
    with open(passthrough, "wb") as fh:
        np.save(fh, fields({"ctf"})[::-1])
    group = tmp_path / "J1_particles.csg"
    text = ("group:\n  name: particles\n  type: particle\nresults:\n" + "".join(
        f"  {r}:\n    metafile: '>{f}'\n    num_items: {len(real)}\n    type: particle.{r}\n"
        for r, f in (("blob", "J1_particles.cs"), ("alignments3D", "J1_particles.cs"),
                     ("ctf", passthrough.name)))).encode()
    clean_passthrough = passthrough.read_bytes()
    rng = np.random.default_rng(SEED)
    outcomes, failures = {"read": 0, "InputError": 0}, []
    for case in range(max(60, CASES // 20)):
        which = case % 2  # the group's text, or the passthrough table's bytes
        mutated, how = mutate(text if which == 0 else clean_passthrough, which == 0, rng)
        group.write_bytes(mutated if which == 0 else text)
        passthrough.write_bytes(clean_passthrough if which == 0 else mutated)
        for source in (tmp_path / "J1_particles.cs", group):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    table = read_particles(source, datadir=data / "cryosparc")
                    _ = table.rotations, table.ctf_array()
                outcomes["read"] += 1
            except InputError:
                outcomes["InputError"] += 1
            except Exception as exc:
                failures.append(f"case {case} ({'csg' if which == 0 else 'passthrough'}: {how}), {source.name}: "
                                f"{type(exc).__name__}: {exc}"[:300])
    assert not failures, "\n".join(failures[:20])
    assert outcomes["read"] and outcomes["InputError"]
