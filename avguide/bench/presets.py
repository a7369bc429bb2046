"""Benchmark settings: :class:`BenchConfig` and the presets ``ci``, ``cpu`` and ``full``.

A preset only fills in numbers; ``key=value`` overrides (``avguide bench --preset cpu seeds=[0,1]``)
go on top, and the resolved config is saved in every result file of the benchmark.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

PRESET_NAMES = ("ci", "cpu", "full")


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
        expert_overrides: ``key=value`` overrides of the stage-1 config, for the expert and the
            reader (e.g. tiny widths for ``ci``).
        expert_epochs, reader_epochs: stage-1 epochs of the AV expert / the evaluation reader.
        paper_l_av: the paper's AV weight (1e-7); ``tuned_l_av``: ours; ``sweep_l_av``: the
            ablation sweep (first animator only).
        tuned_balance: > 0: the tuned conditions set l_av every step so that the AV gradient on
            the vertices is this multiple of the vertex-loss gradient (``av.balance``), instead
            of the fixed ``tuned_l_av``.
        tuned_balance_on: where that balance is measured (``av.balance_on``): "vertices" (the
            vertex-loss gradient on the predicted vertices) or "parameters" (the animator's own
            losses on its parameters; needed for CodeTalker, whose code regression never reaches
            the vertices).
        l_rlv: weight of the lip-vertex regulariser in every AV condition.
        expert_mode: "frozen" or "finetune" in every AV condition.
        probe_every: gradient-probe period (steps) of the AV conditions.
        finetune_epochs: 0 trains every condition from scratch for ``epochs``. > 0: the AV
            conditions start from the same seed's trained baseline and train this many more
            epochs, and a control ``baseline_more`` continues the baseline for as many epochs
            with the vertex loss only (the claim is then checked against that control).
        finetune_lr: learning rate of those continued runs (0 = ``lr``). Their optimiser starts
            afresh, so a smaller rate avoids Adam's first large steps undoing the baseline.
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
    expert_overrides: list[str] = field(default_factory=list)
    expert_epochs: int = 2
    reader_epochs: int = 2
    paper_l_av: float = 1e-7
    tuned_l_av: float = 1e-4
    tuned_balance: float = 0.0
    tuned_balance_on: Literal["vertices", "parameters"] = "vertices"
    sweep_l_av: list[float] = field(default_factory=list)
    l_rlv: float = 0.0
    expert_mode: Literal["frozen", "finetune"] = "frozen"
    probe_every: int = 5
    finetune_epochs: int = 0
    finetune_lr: float = 0.0
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
        if self.tuned_balance_on not in ("vertices", "parameters"):
            errors.append(f"tuned_balance_on: 'vertices' or 'parameters', got {self.tuned_balance_on!r}")
        bad = [o for o in self.expert_overrides if "=" not in o]
        if bad:
            errors.append(f"expert_overrides: key=value strings; got {bad}")
        return errors


TINY_EXPERT = ["expert.adim=16", "expert.aheads=2", "expert.eunits=32", "expert.elayers=1", "expert.aux_adim=16",
               "expert.aux_aheads=2", "expert.aux_eunits=32", "expert.aux_elayers=1", "expert.fusion_hdim=32",
               "expert.ddim=16", "expert.dheads=2", "expert.dunits=32", "expert.dlayers=1",
               "expert.visual_widths=[4,4,8,8]", "expert.audio_widths=[4,4,8,8]", "expert.cnn_module_kernel=3",
               "expert.aux_cnn_module_kernel=3", "crop=16", "batch_size=2", "lr=3e-3", "warmup_epochs=0"]
"""Stage-1 overrides of the ``ci`` preset: a tiny expert and reader (plumbing only)."""

NARROW_EXPERT = ["expert.adim=64", "expert.aheads=4", "expert.eunits=128", "expert.elayers=2", "expert.aux_adim=64",
                 "expert.aux_aheads=4", "expert.aux_eunits=128", "expert.aux_elayers=2", "expert.fusion_hdim=128",
                 "expert.ddim=64", "expert.dheads=4", "expert.dunits=128", "expert.dlayers=1",
                 "expert.visual_widths=[8,16,32,64]", "expert.audio_widths=[8,16,32,64]", "crop=32",
                 "batch_size=8", "warmup_epochs=1", "expert.audio_frontend=resnet1d"]
"""Stage-1 overrides of the ``cpu`` preset: ``cpu_small`` narrowed to adim 64, 2 + 2 Conformer
layers, ResNet widths 8..64, 32x32 lip crops (a stage-1 step costs about a third of
``cpu_small``'s), so that three stage-1 runs fit the preset's 90 minutes. It keeps the
raw-waveform audio front-end the preset's published results were measured with."""


def bench_preset(name: str) -> dict[str, Any]:
    """The numbers of a preset, as a dict of :class:`BenchConfig` fields.

    - ``ci``: 3 subjects x 4 sentences, tiny animators and experts, 1 seed, 2 epochs: minutes on
      a laptop; checks the plumbing, not the claim.
    - ``cpu``: a reduced synthetic benchmark (10 subjects x 20 sentences at 30 fps: 120 training
      recordings; 20 test recordings: 2 unseen subjects x sentences 11-20, which the training
      subjects speak too), the ``cpu`` animators, the narrowed expert and reader
      (:data:`NARROW_EXPERT`), 3 seeds. Every
      animator's baseline trains 30 epochs; the AV conditions and a vertex-loss control
      (``baseline_more``) continue it for 2 epochs at lr 1e-4, so the claim is checked against a
      control with the same number of steps. The tuned condition balances the AV gradient at
      0.2x the vertex-loss gradient (the best balance of the session-2 experiment on the default
      benchmark); the sweep brackets the balanced l_av (about 1e-9 there). The ablations and the
      sweep run for the first seed only. Measured end to end on 2 CPU cores (shared machine, no
      GPU): 75.6 min wall (4519 s of steps: experts 408 s; per seed, FaceFormer ~370 s and
      CodeTalker ~900 s, of which its VQ-VAE 330 s and stage 2 400 s; the 4 ablation/sweep runs
      240 s).
    - ``full``: the default synthetic benchmark (12 x 40), published animator sizes, the base
      expert (88x88), 3 seeds, long schedules: for a GPU.

    Raises:
        KeyError: unknown preset name (the caller turns it into a BadInputError).
    """
    presets = {
        "ci": dict(synth={"subjects": 3, "sentences": 4}, seeds=[0], animator_preset="tiny", epochs=2,
                   vq_epochs=2, batch_size=2, lr=1e-3, expert_overrides=list(TINY_EXPERT), expert_epochs=3,
                   reader_epochs=3, tuned_l_av=1e-4, sweep_l_av=[1e-3], video_sentences=1, video_size=96),
        "cpu": dict(synth={"subjects": 10, "sentences": 20}, seeds=[0, 1, 2], animator_preset="cpu",
                    epochs=30, vq_epochs=30, batch_size=8, lr=1e-3, expert_overrides=list(NARROW_EXPERT),
                    expert_epochs=30, reader_epochs=30, finetune_epochs=2, finetune_lr=1e-4,
                    tuned_balance=0.2, sweep_l_av=[1e-9, 1e-8], ablation_seeds=1, video_sentences=2,
                    video_size=256),
        "full": dict(synth={}, seeds=[0, 1, 2], animator_preset="auto", epochs=100, vq_epochs=100, batch_size=4,
                     lr=1e-4, expert_size="base", expert_overrides=["batch_size=8"], expert_epochs=60,
                     reader_epochs=60, tuned_balance=0.2, sweep_l_av=[1e-9, 1e-8], video_sentences=4,
                     video_size=512),
    }
    return {"preset": name, **presets[name]}
