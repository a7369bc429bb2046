"""window_submesh: the part of a mesh the cameras can show keeps every face drawn in any frame
(resampled frames too), the faces the shading and the antialiasing read around them, and the
mesh's order; it declines what it cannot bound."""

import dataclasses

import torch

from avguide.render import lip_face_mask, project, rasterize, resample_fps
from avguide.render.lipcam import crop_window
from avguide.render.submesh import window_submesh


def test_keeps_every_drawn_face_and_what_the_renderer_reads_around_it(head, jaw_batch):
    g = torch.Generator().manual_seed(0)
    verts, _, nb, cam = jaw_batch(head, g, 7)  # (2, 7, V, 3)
    lengths = torch.tensor([7, 5])
    faces = head.faces
    win = crop_window(cam, 32)  # a 34 x 34 window, as the expert's crops
    mask = lip_face_mask(head.vertices.expand(2, -1, -1), faces, cam)
    sub = window_submesh(verts, lengths, win, faces, nb, mask)
    assert sub is not None and sub.face_index.numel() < faces.shape[0] // 2  # most of the head is gone
    assert bool((sub.face_index.diff() > 0).all() and (sub.vertices.diff() > 0).all())  # the mesh's order
    assert torch.equal(sub.vertices[sub.faces], faces[sub.face_index])  # the same triangles, re-indexed
    assert not bool((sub.face_mask & ~mask[sub.face_index]).any())  # only faces of the mask are drawn
    # every face drawn in some valid frame, at 30 fps and resampled to 25 fps, is kept and drawn
    v25, len25 = resample_fps(verts, lengths, 30.0)
    drawn = set()
    for seq, n in ((verts, lengths), (v25, len25)):
        for b in range(2):
            pix = project(seq[b, : int(n[b])], win.select(slice(b, b + 1)))
            fid = rasterize(pix, faces, win.size, face_mask=mask)
            drawn |= set(fid[fid >= 0].unique().tolist())
    slot = {int(f): i for i, f in enumerate(sub.face_index)}
    assert drawn and all(f in slot and bool(sub.face_mask[slot[f]]) for f in drawn)
    # the faces around a drawn face's vertices (normals), with their neighbours re-indexed
    around = torch.zeros(head.vertices.shape[0], dtype=torch.bool)
    around[faces[sorted(drawn)].reshape(-1)] = True
    assert all(int(f) in slot for f in around[faces].any(1).nonzero().squeeze(1))
    for i, f in enumerate(sub.face_index.tolist()):
        for k in range(3):
            n_whole, n_sub = int(nb[f, k]), int(sub.neighbors[i, k])
            assert n_sub == slot.get(n_whole, -1)
            if sub.face_mask[i]:  # a face to draw has all of its neighbours
                assert (n_whole < 0) == (n_sub < 0)


def test_declines_what_it_cannot_bound(head, jaw_batch):
    g = torch.Generator().manual_seed(1)
    verts, _, nb, cam = jaw_batch(head, g, 3)
    lengths = torch.tensor([3, 3])
    assert window_submesh(verts, lengths, cam, head.faces, nb) is not None
    assert window_submesh(verts, lengths, dataclasses.replace(cam, orthographic=False), head.faces, nb) is None
    bad = verts.clone()
    bad[1, 2, 0, 0] = float("nan")
    assert window_submesh(bad, lengths, cam, head.faces, nb) is None
    bad[1, 2, 0, 0] = 0.0  # a NaN past the valid frames is never read
    bad[1, 2, 5, 1] = float("nan")
    assert window_submesh(bad, torch.tensor([3, 2]), cam, head.faces, nb) is not None
    for wrong in (torch.tensor([0, 3]), torch.tensor([3, 4]), torch.tensor([3])):
        assert window_submesh(verts, wrong, cam, head.faces, nb) is None
