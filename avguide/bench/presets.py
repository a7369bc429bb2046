"""Benchmark settings: :class:`BenchConfig` and the presets ``ci``, ``cpu`` and ``full``.

A preset only fills in numbers; ``key=value`` overrides (``avguide bench --preset cpu seeds=[0,1]``)
go on top, and the resolved config is saved in every result file of the benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from avguide import configs
from avguide.errors import BadInputError

PRESET_NAMES = tuple(n.split("/", 1)[1] for n in configs.names() if n.startswith("bench/"))
"""The presets: one file each in ``avguide/configs/bench/``."""


@dataclass
class BenchConfig:
    """What ``avguide bench`` runs (see :func:`avguide.bench.runner.run_bench`).

    Attributes:
        preset: the preset these numbers came from (informational).
        data: an existing dataset directory; "" generates the synthetic benchmark under
            ``OUT/data`` with the ``synth`` overrides of :class:`avguide.synth.generator.SynthConfig`.
        animators: animators compared ("faceformer", "codetalker").
        seeds: training seeds of every animator condition (mean +- std over them).
        animator_preset: animator size ("tiny", "vocaset", "biwi", "auto"); ``model``: overrides.
        epochs, vq_epochs, batch_size, lr: animator training (vq_epochs: CodeTalker's VQ-VAE).
        max_sequences: limit the training split (0 = all).
        expert_size: "cpu_small" or "base" (the expert and the reader).
        expert_recipe: a stage-1 recipe (``avguide/configs/<name>.yaml``, e.g. ``expert/tiny``) applied
            to the expert and the reader before ``expert_overrides``; "" for none.
        expert_overrides: more ``key=value`` overrides of the stage-1 config, for the expert and the
            reader.
        expert_epochs, reader_epochs: stage-1 epochs of the AV expert / the evaluation reader.
        expert, reader: an already trained AV expert and evaluation reader (a stage-1 run or a
            shipped name such as ``expert-av`` / ``reader``) used as they are instead of training
            them; "" trains them (``expert_epochs`` / ``reader_epochs``). With ``expert`` given the
            no-stage-1 ablation is that expert's architecture at a fresh initialisation.
        paper_l_av: the paper's AV weight (1e-7); ``tuned_l_av``: ours; ``sweep_l_av``: the
            ablation sweep (first animator only).
        tuned_balance: > 0: the tuned conditions set l_av every step so that the AV gradient on
            the vertices is this multiple of the vertex-loss gradient (``av.balance``), instead
            of the fixed ``tuned_l_av``.
        tuned_balance_on: where that balance is measured (``av.balance_on``): "vertices" (the
            vertex-loss gradient on the predicted vertices) or "parameters" (the animator's own
            losses on its parameters; needed for CodeTalker, whose code regression never reaches
            the vertices); "auto": parameters for CodeTalker, vertices for FaceFormer (on the
            vertices, CodeTalker's continued runs with the paper's and the balanced weight were
            the same model to 5 digits of their gradient norm: the code regression is 4 orders
            of magnitude above the vertex loss).
        l_rlv: weight of the lip-vertex regulariser in every AV condition.
        expert_mode: "frozen" or "finetune" in every AV condition.
        probe_every: gradient-probe period (steps) of the AV conditions.
        finetune_epochs: 0 trains every condition from scratch for ``epochs``. > 0: the AV
            conditions start from the same seed's trained baseline and train this many more
            epochs, and a control ``baseline_more`` continues the baseline for as many epochs
            with the vertex loss only (the claim is then checked against that control).
        finetune_lr: learning rate of those continued runs (0 = ``lr``). Their optimiser starts
            afresh, so a smaller rate avoids Adam's first large steps undoing the baseline.
        audio_variants: more AV conditions (first animator, like the ablations): name -> the
            stage-2 audio the expert hears (``av.audio_drop``, ``av.audio_noise_prob``,
            ``av.audio_snr_db``) on top of the tuned condition; they make the lips matter to an
            expert that reads clean audio by itself.
        mechanism: measure how much the AV (and visual-only) expert's reading depends on the lips
            (:func:`avguide.bench.mechanism.lip_dependence` on the test split).
        skip: condition names not to train (quick experiments, e.g. ["av_paper"]).
        ablations: also run the visual-only expert and the no-stage-1 (untrained) expert
            (first animator only).
        ablation_seeds: the ablations and the l_av sweep run for the first this-many seeds
            (0 = every seed); the main conditions always run for every seed.
        video_sentences: test sentences in the side-by-side video; ``video_size``: panel side.
        device: "auto", "cpu" or "cuda".
    """

    preset: str = "ci"
    data: str = ""
    synth: dict[str, Any] = field(default_factory=dict)
    animators: list[str] = field(default_factory=lambda: ["faceformer", "codetalker"])
    seeds: list[int] = field(default_factory=lambda: [0])
    animator_preset: str = "tiny"
    model: dict[str, Any] = field(default_factory=dict)
    epochs: int = 2
    vq_epochs: int = 2
    batch_size: int = 2
    lr: float = 1e-3
    max_sequences: int = 0
    expert_size: Literal["cpu_small", "base"] = "cpu_small"
    expert: str = ""
    reader: str = ""
    expert_recipe: str = ""
    expert_overrides: list[str] = field(default_factory=list)
    expert_epochs: int = 2
    reader_epochs: int = 2
    paper_l_av: float = 1e-7
    tuned_l_av: float = 1e-4
    tuned_balance: float = 0.0
    tuned_balance_on: Literal["vertices", "parameters", "auto"] = "vertices"
    sweep_l_av: list[float] = field(default_factory=list)
    l_rlv: float = 0.0
    expert_mode: Literal["frozen", "finetune"] = "frozen"
    probe_every: int = 5
    finetune_epochs: int = 0
    finetune_lr: float = 0.0
    audio_variants: dict[str, dict[str, float]] = field(default_factory=dict)
    mechanism: bool = True
    skip: list[str] = field(default_factory=list)
    ablations: bool = True
    ablation_seeds: int = 0
    video_sentences: int = 1
    video_size: int = 128
    device: str = "auto"

    def check(self) -> list[str]:
        errors = []
        bad = [a for a in self.animators if a not in ("faceformer", "codetalker")]
        if not self.animators or bad:
            errors.append(f"animators: a non-empty subset of faceformer, codetalker; got {self.animators}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            errors.append(f"seeds: distinct integers, at least one; got {self.seeds}")
        for name in ("epochs", "vq_epochs", "batch_size", "expert_epochs", "reader_epochs"):
            if getattr(self, name) < 1:
                errors.append(f"{name}: must be >= 1, got {getattr(self, name)}")
        if not self.lr > 0:
            errors.append(f"lr: must be > 0, got {self.lr}")
        if any(not x >= 0 for x in [self.paper_l_av, self.tuned_l_av, self.tuned_balance, self.l_rlv,
                                     *self.sweep_l_av]):
            errors.append("paper_l_av, tuned_l_av, tuned_balance, sweep_l_av, l_rlv: must be >= 0")
        if self.probe_every < 0 or self.finetune_epochs < 0 or self.finetune_lr < 0 or self.ablation_seeds < 0:
            errors.append("probe_every, finetune_epochs, finetune_lr and ablation_seeds: must be >= 0")
        if self.video_sentences < 0 or self.video_size < 16 or self.video_size % 2:
            errors.append("video_sentences >= 0 and video_size an even number >= 16")
        if self.tuned_balance_on not in ("vertices", "parameters", "auto"):
            errors.append(f"tuned_balance_on: 'vertices', 'parameters' or 'auto', got {self.tuned_balance_on!r}")
        if self.expert_recipe and self.expert_recipe not in configs.names():
            errors.append(f"expert_recipe: {self.expert_recipe!r} is not a recipe in avguide/configs")
        for name, variant in self.audio_variants.items():
            unknown = sorted(set(variant) - {"audio_drop", "audio_noise_prob", "audio_snr_db"})
            if unknown or not name.startswith("av_"):
                errors.append(f"audio_variants.{name}: a name starting with av_ and keys audio_drop, "
                              f"audio_noise_prob, audio_snr_db; got {sorted(variant)}")
        bad = [o for o in self.expert_overrides if "=" not in o]
        if bad:
            errors.append(f"expert_overrides: key=value strings; got {bad}")
        return errors


def bench_preset(name: str) -> dict[str, Any]:
    """The numbers of a preset, as a dict of :class:`BenchConfig` fields, read from
    ``avguide/configs/bench/<name>.yaml`` (each file says what its preset is for and what it costs).

    Raises:
        BadInputError: unknown preset name.
    """
    if name not in PRESET_NAMES:
        raise BadInputError(f"--preset {name!r}: unknown; choose one of {', '.join(PRESET_NAMES)}")
    return {"preset": name, **configs.load(f"bench/{name}")}
