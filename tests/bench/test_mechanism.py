"""The mechanism measurement (:mod:`avguide.bench.mechanism`): partners and looped motion checked
by hand, and the expert's losses under true lips equal to the stage-2 guidance's own."""

import numpy as np
import pytest
import torch

from avguide.bench.mechanism import _partners, dependence_table, lip_dependence, other_motion
from avguide.data.batching import Batch, RecordingDataset, collate
from avguide.data.layouts import open_dataset
from avguide.lipreader.preprocess import align_audio, normalize_audio
from avguide.lipreader.reader import decode_batch
from avguide.metrics.text import EditCounts, char_counts
from avguide.train.avguidance import AVGuidance, AVGuidanceConfig, descent_alignment


def test_partners_are_other_recordings_of_the_same_subject():
    subjects = ["a", "a", "b", "a", "b", "c"]
    partners = _partners(subjects, np.random.default_rng(0))
    for i, j in enumerate(partners):
        assert subjects[j] == subjects[i]
        assert (j != i) == (subjects.count(subjects[i]) > 1)   # "c" has no other recording
    assert sorted(partners[i] for i in (0, 1, 3)) == [0, 1, 3]  # a cycle: each lends its motion once


def test_other_motion_moves_the_template_by_the_partners_motion_looped():
    v, t = 2, 5
    template = torch.tensor([[[0.0, 0, 0], [1, 1, 1]], [[10.0, 10, 10], [20, 20, 20]]])            # (2, V, 3)
    motion = torch.arange(2 * t * v * 3, dtype=torch.float32).reshape(2, t, v, 3)
    batch = Batch(names=["x", "y"], texts=["", ""], audio=torch.zeros(2, 1), audio_lengths=torch.ones(2, dtype=torch.long),
                  vertices=template[:, None] + motion, lengths=torch.tensor([5, 3]), template=template,
                  subject=torch.zeros(2, dtype=torch.long), fps=30.0)
    out = other_motion(batch, [1, 0])
    for f in range(t):
        assert torch.equal(out[0, f], template[0] + motion[1, f % 3])   # y has 3 frames: 0 1 2 0 1
        assert torch.equal(out[1, f], template[1] + motion[0, f % 5])


def test_descent_alignment_by_hand():
    """The cosine between -grad and true - shown over the valid frames of the lip vertices only."""
    true = torch.zeros(3, 4, 5, 3)
    shown = true.clone()
    shown[:, :, 1, 0] = 1.0                  # lip vertex 1 pushed along x at every frame
    shown[:, 3:] += 7.0                      # frame 3 is padding for every recording: must not count
    shown[:, :, 4] += 5.0                    # vertex 4 is not a lip: must not count
    lips, lengths = torch.tensor([1, 2]), torch.tensor([3, 3, 3])
    grad = torch.zeros_like(true)
    grad[0, :, 1, 0] = 2.0                   # descent -x: straight back to the truth
    grad[1, :, 1, 0] = -0.5                  # the wrong way
    grad[2, :, 2, 1] = 3.0                   # sideways (another vertex, another axis)
    grad[:, 3] = 100.0                       # padding
    got = descent_alignment(grad, shown, true, lengths, lips)
    assert got.dtype == torch.float64 and torch.allclose(got, torch.tensor([1.0, -1.0, 0.0], dtype=torch.float64))
    half = grad.clone()
    half[0, :, 2, 1] = 2.0                   # half of it sideways: cos 45 degrees
    assert descent_alignment(half, shown, true, lengths, lips)[0].item() == pytest.approx(2 ** -0.5)
    assert descent_alignment(grad, true, true, lengths, lips).abs().max() == 0  # nowhere to go: 0, not NaN


def test_lip_dependence_reads_true_lips_as_the_guidance_does(synth_av):
    data, expert = synth_av
    res = lip_dependence(expert, data, "train", batch_size=4)
    index = open_dataset(data)
    refs = sorted(index.split("train"), key=lambda r: (r.subject, r.sentence))
    assert res["n"] == len(refs) and res["modality"] == "av"
    assert set(res["rows"]) == {f"{v}/{a}" for v in ("true", "static", "other") for a in ("clean", "dropped")}
    guide = AVGuidance(AVGuidanceConfig(expert=str(expert)), index.n_vertices, torch.as_tensor(index.regions["lips"]),
                       torch.device("cpu"))
    ds = RecordingDataset(index, refs, need_text=True)
    ctc = ce = 0.0
    chars = EditCounts()
    for s in range(0, len(ds), 4):
        batch = collate([ds[i] for i in range(s, min(len(ds), s + 4))])
        with torch.no_grad():
            losses = guide.losses(batch.vertices, batch)
            video, len25 = guide.video(batch.vertices, batch.lengths, batch.template, batch.fps)
            audio, alen = align_audio(batch.audio, batch.audio_lengths, len25)
            enc = guide.expert.encode(video=video, video_lengths=len25, audio=normalize_audio(audio, alen),
                                      audio_lengths=alen)
        for ref, hyp in zip(batch.texts, decode_batch(guide.expert, enc, guide.tokenizer)):
            chars = chars + char_counts(ref, hyp)
        ctc += float(losses["ctc"]) * len(batch.names)
        ce += float(losses["ce"]) * len(batch.names)
    true = res["rows"]["true/clean"]
    assert true["ctc"] == pytest.approx(ctc / len(ds), rel=1e-5) and true["ce"] == pytest.approx(ce / len(ds), rel=1e-5)
    assert true["cer"] == chars.rate > 0  # an expert trained for one step reads little
    for key, r in res["rows"].items():
        assert 0 < r["cer"] and 0 < r["grad_lips"] <= r["grad_mesh"] * (1 + 1e-6)
        assert (r["toward_true"] is None) == key.startswith("true/")
        assert key.startswith("true/") or -1 <= r["toward_true"] <= 1
    # the lips reach the expert (an untrained one barely: its losses agree to ~1e-6)
    assert res["rows"]["static/clean"]["grad_lips"] != true["grad_lips"]
    lengths = [len(ds[i].vertices) for i in range(len(ds))]
    n_lips = len(index.regions["lips"])
    assert res["chance_cos"] == pytest.approx(np.mean([1 / np.sqrt(t * n_lips * 3) for t in lengths]))
    assert "| static/dropped |" in dependence_table(res) and "random direction" in dependence_table(res)
