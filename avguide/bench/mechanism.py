"""How much the expert's reading depends on the lips: the mechanism behind the AV guidance.

The AV loss can only guide the lips as far as the expert's output depends on them. With clean
audio a strong AV expert may read the transcript from the audio alone, and then its loss is
nearly the same whatever the lips do: its gradient on the lip vertices is small, and the
guidance has little to push with. :func:`lip_dependence` measures this on a split of the
dataset, through the very path stage 2 uses (:class:`avguide.train.avguidance.AVGuidance`: the
meshes rendered by the differentiable renderer with the lip camera placed from each subject's
template, the expert's tokeniser and crop), for every pair of

    lips    "true": the recording's own (ground-truth) meshes;
            "static": its template held still (no lip motion at all);
            "other": another recording's motion of the same subject, looped or cut to this
            recording's length (moving lips that say something else);
    audio   "clean": the recording's audio; "dropped": zeros (AV experts only; a visual-only
            expert has none and reads the "clean" rows).

and reports, per pair: the greedy CER and WER of the expert against the transcripts (corpus
rates), the mean CTC and attention losses (the terms of L_av), the norm of the gradient of
L_av = l_ctc * L_ctc + l_ce * L_ce (the stage-2 weights) on the lip vertices and on the whole
mesh, per recording (the root of the summed squares over frames and coordinates), averaged, and
for wrong lips ("static", "other") where the gradient points: the cosine between the descent
direction on the lip vertices and the way to the true lips (:func:`descent_alignment`), averaged
over recordings.

Read it so: if CER and the losses barely change from "true" to "static" and "other" with clean
audio, the expert reads the audio and the AV loss has little to say about the lips; the gaps with
the audio dropped show what the visual stream alone can tell. A cosine near 0 (a random
direction in this many coordinates gives about 1/sqrt(frames x lip vertices x 3)) means that
descending L_av moves the lips no nearer the truth, whatever its weight.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from avguide.data.batching import Batch, RecordingDataset, collate
from avguide.data.layouts import open_dataset
from avguide.lipreader.preprocess import align_audio, normalize_audio
from avguide.lipreader.reader import decode_batch, load_trained_expert
from avguide.metrics.text import EditCounts, char_counts, word_counts
from avguide.train.avguidance import AVGuidance, AVGuidanceConfig, descent_alignment

LIPS = ("true", "static", "other")
AUDIO = ("clean", "dropped")


def other_motion(batch: Batch, partners: list[int]) -> torch.Tensor:
    """Each recording's template moved by another recording's motion, looped or cut to its length.

    Args:
        batch: B recordings. partners: for each, the index in the batch whose motion it gets
            (same subject, other utterance).
    Returns:
        (B, Tmax, V, 3) float meshes (the padding past each length repeats the loop too).
    """
    out = torch.empty_like(batch.vertices)
    for i, j in enumerate(partners):
        n = int(batch.lengths[j])
        motion = batch.vertices[j, :n] - batch.template[j]                          # (n, V, 3)
        frames = torch.arange(out.shape[1]) % n                                     # loop over the partner
        out[i] = batch.template[i] + motion[frames]
    return out


def _partners(subjects: list[str], rng: np.random.Generator) -> list[int]:
    """For each recording, another of the same subject in the batch (the next one, cyclically, in
    a random order of that subject's recordings); itself when it is the subject's only one."""
    partners = list(range(len(subjects)))
    for s in set(subjects):
        idx = [i for i, x in enumerate(subjects) if x == s]
        order = list(rng.permutation(idx))
        for k, i in enumerate(order):
            partners[i] = int(order[(k + 1) % len(order)])
    return partners


def lip_dependence(expert: str | Path, data: str | Path, split: str = "test", *, batch_size: int = 8,
                   seed: int = 0, max_recordings: int = 0, device: str = "cpu") -> dict:
    """CER, losses and lip gradients of an expert reading true, static and other lips (see the
    module docstring).

    Args:
        expert: a stage-1 expert run or a shipped name (``expert-av``), AV or visual-only.
        data: the dataset (its meshes must be the expert's topology). split: whose recordings.
        batch_size: recordings per batch; "other" partners are drawn within a batch, so the
            recordings are grouped by subject first.
        seed: the draw of partners. max_recordings: 0 for all of the split.
        device: where the expert runs ("auto": CUDA when there is one).
    Returns:
        {"expert", "split", "n", "modality", "rows": {"<lips>/<audio>": {"cer", "wer", "ctc",
        "ce", "grad_lips", "grad_mesh", "toward_true"}}, "chance_cos"} (``toward_true`` None for the
        true lips; ``chance_cos``: the RMS cosine of a random direction, ``1 / sqrt(frames x lip
        vertices x 3)``, averaged over the recordings).
    Raises:
        BadInputError / MissingFileError: no such expert or data; an audio-only expert.
    """
    index = open_dataset(data)
    refs = sorted(index.split(split), key=lambda r: (r.subject, r.sentence))
    if max_recordings:
        refs = refs[:max_recordings]
    dev = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device)
    trained = load_trained_expert(expert)
    lips = torch.as_tensor(index.regions["lips"])
    guide = AVGuidance(AVGuidanceConfig(expert=str(expert)), index.n_vertices, lips, dev, expert=trained)
    audio_modes = AUDIO if guide.audio_visual else ("clean",)
    model, rng = guide.expert, np.random.default_rng(seed)
    counts = {(v, a): (EditCounts(), EditCounts()) for v in LIPS for a in audio_modes}
    sums = {(v, a): np.zeros(5) for v in LIPS for a in audio_modes}   # ctc, ce, grad_lips, grad_mesh, toward_true
    chance = 0.0  # sum over recordings of 1 / sqrt(valid frames x lip vertices x 3): a random direction's cosine
    dataset = RecordingDataset(index, refs, need_text=True)
    for s in range(0, len(dataset), batch_size):
        batch = collate([dataset[i] for i in range(s, min(len(dataset), s + batch_size))]).to(dev)
        meshes = {"true": batch.vertices,
                  "static": batch.template[:, None].expand_as(batch.vertices).contiguous(),
                  "other": other_motion(batch, _partners([r.subject for r in refs[s:s + batch_size]], rng))}
        targets = guide.targets(batch.texts)
        chance += float((1 / (batch.lengths.double() * len(guide.lips) * 3).sqrt()).sum())
        for v, mesh in meshes.items():
            pred = mesh.clone().requires_grad_()
            video, len25 = guide.video(pred, batch.lengths, batch.template, batch.fps)   # (B, T25, 1, c, c)
            for a in audio_modes:
                audio = alen = None
                if guide.audio_visual:
                    audio, alen = align_audio(batch.audio, batch.audio_lengths, len25)
                    audio = torch.zeros_like(audio) if a == "dropped" else normalize_audio(audio, alen)
                out = model(video, len25, audio, alen, targets)
                unit = guide.cfg.l_ctc * out["loss_ctc"] + guide.cfg.l_ce * out["loss_att"]   # L_av
                (grad,) = torch.autograd.grad(unit, pred, retain_graph=a != audio_modes[-1])   # (B, T, V, 3)
                n = len(batch.names)
                toward = descent_alignment(grad, pred.detach(), batch.vertices, batch.lengths, guide.lips)
                sums[v, a] += [float(out["loss_ctc"].detach()) * n, float(out["loss_att"].detach()) * n,
                               float(grad[:, :, guide.lips].flatten(1).norm(dim=1).sum()),
                               float(grad.flatten(1).norm(dim=1).sum()), float(toward.sum())]
                with torch.no_grad():
                    enc = model.encode(video=video.detach(), video_lengths=len25, audio=audio, audio_lengths=alen)
                    texts = decode_batch(model, enc, guide.tokenizer)
                for ref, text in zip(batch.texts, texts):
                    cc, wc = counts[v, a]
                    counts[v, a] = (cc + char_counts(ref, text), wc + word_counts(ref, text))
    n = len(dataset)
    rows = {}
    for v, a in counts:
        mean = (sums[v, a] / max(n, 1)).tolist()
        rows[f"{v}/{a}"] = {"cer": counts[v, a][0].rate, "wer": counts[v, a][1].rate,
                            **dict(zip(("ctc", "ce", "grad_lips", "grad_mesh"), mean[:4])),
                            "toward_true": None if v == "true" else mean[4]}  # true lips: no way to go
    return {"expert": str(expert), "split": split, "n": n, "modality": trained.model.cfg.modality, "rows": rows,
            "chance_cos": chance / max(n, 1)}


def dependence_table(result: dict) -> str:
    """Markdown table of :func:`lip_dependence`'s rows."""
    expert = Path(result["expert"])
    shown = expert.name if expert.parent.name == "pretrained" else str(expert)  # a shipped model: its name
    lines = [f"Expert `{shown}` ({result['modality']}) on the {result['split']} split, "
             f"{result['n']} recordings"
             + (f" (a random direction's cosine: about {result['chance_cos']:.4f})" if "chance_cos" in result else "")
             + ":", "",
             "| lips / audio | CER % | WER % | L_ctc | L_ce | grad on lips | grad on mesh | cos(descent, to true lips) |",
             "|---|---|---|---|---|---|---|---|"]
    order = [f"{v}/{a}" for v in LIPS for a in AUDIO]  # records read back from JSON have their keys sorted
    for key, r in sorted(result["rows"].items(), key=lambda kv: order.index(kv[0])):
        toward = r.get("toward_true")  # absent from records measured before it existed
        lines.append(f"| {key} | {100 * r['cer']:.1f} | {100 * r['wer']:.1f} | {r['ctc']:.3g} | {r['ce']:.3g} "
                     f"| {r['grad_lips']:.3g} | {r['grad_mesh']:.3g} | {'-' if toward is None else f'{toward:.4f}'} |")
    return "\n".join(lines) + "\n"
