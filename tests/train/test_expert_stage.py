"""Stage 1 (expert on GT renders): a tiny run on a generated 3x2 synthetic set, exact resume,
checkpoint contents, audio augmentation, audio/video alignment."""

import dataclasses
import json
import math
import shutil

import pytest
import torch

from avguide.errors import BadInputError
from avguide.lipreader.reader import load_trained_expert
from avguide.train.audio_augment import (AudioAugmentConfig, add_noise, augment_audio, change_speed, draw_speeds,
                                         retime_frames, time_mask)
from avguide.checkpoint import load_checkpoint
from avguide.lipreader.preprocess import align_audio
from avguide.train.expert import ExpertStageConfig, run_expert_stage

TINY = ["expert.adim=16", "expert.aheads=2", "expert.eunits=32", "expert.elayers=1", "expert.aux_adim=16",
        "expert.aux_aheads=2", "expert.aux_eunits=32", "expert.aux_elayers=1", "expert.fusion_hdim=32",
        "expert.ddim=16", "expert.dheads=2", "expert.dunits=32", "expert.dlayers=1",
        "expert.visual_widths=[4,4,8,8]", "expert.audio_widths=[4,4,8,8]", "expert.cnn_module_kernel=3",
        "expert.aux_cnn_module_kernel=3", "crop=16", "optim.batch_size=2", "optim.epochs=2", "optim.lr=3e-3",
        "optim.warmup_epochs=0"]


@pytest.fixture(scope="module")
def synth3x2(tmp_path_factory):
    from avguide.config import load_config
    from avguide.synth.generator import SynthConfig, generate

    root = tmp_path_factory.mktemp("synth") / "data"
    generate(load_config(SynthConfig, None, ["subjects=3", "sentences=2", "workers=1"]), root)
    return root


@pytest.fixture(scope="module")
def av_run(synth3x2, tmp_path_factory):
    """An uninterrupted 2-epoch AV run (render cache shared with the other runs of the module), with
    speed perturbation on half the utterances (so the exact resume covers its random draws)."""
    base = tmp_path_factory.mktemp("runs")
    torch.set_num_threads(1)  # bitwise equality below needs the same thread count in both runs
    run = run_expert_stage(str(synth3x2), base / "full", modality="av",
                           overrides=TINY + [f"cache_dir={base / 'cache'}", "audio.speed_prob=0.5"])
    return run, base


def test_run_writes_checkpoints_with_config(av_run, synth3x2):
    run, _ = av_run
    state, meta, ckpt = load_checkpoint(run, "last")
    assert meta["epoch"] == 2 and meta["step"] == 2  # 2 training recordings, batch 2
    assert meta["config"]["modality"] == "av" and meta["config"]["data"] == str(synth3x2)
    assert meta["video"] == {"crop": 16, "camera": "template", "fps": 25} and meta["tokenizer"] == "spm"
    assert meta["expert"]["adim"] == 16 and meta["expert"]["odim"] == 5049
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [1, 2]
    assert all(math.isfinite(x["train_total"]) and 0 <= x["val_cer"] for x in lines)
    # AV: the best checkpoint is the one with the lowest mean of the clean and dropped-audio CERs
    assert all(x["val_select"] == (x["val_cer"] + x["val_cer_dropped"]) / 2 for x in lines)
    best = min(lines, key=lambda x: x["val_select"])["step"]
    assert json.loads((run / "best.json").read_text())["checkpoint"] == f"ckpt-{best:08d}"
    assert lines[0]["render_s"] > 0 and lines[1]["render_s"] == 0  # rendered once, then cached
    expert = load_trained_expert(run, "last")
    for k, v in expert.model.state_dict().items():
        torch.testing.assert_close(v, state[k], rtol=0, atol=0)


def _cut_after_epoch_1(run, cut):
    """A copy of a 2-epoch run as if interrupted after its first epoch."""
    shutil.copytree(run, cut)
    shutil.rmtree(cut / "ckpt-00000002")
    (cut / "last.json").write_text(json.dumps({"checkpoint": "ckpt-00000001"}))
    (cut / "best.json").unlink()
    return cut


def test_resume_is_exact(av_run):
    """Resume epoch 2 from the epoch-1 checkpoint: identical weights to the uninterrupted run."""
    run, base = av_run
    cut = _cut_after_epoch_1(run, base / "cut")
    torch.set_num_threads(1)
    run_expert_stage(None, cut, resume=True)
    full, _, _ = load_checkpoint(run, "last")
    resumed, meta, _ = load_checkpoint(cut, "last")
    assert meta["epoch"] == 2
    for k in full:
        torch.testing.assert_close(resumed[k], full[k], rtol=0, atol=0, msg=k)


def test_run_saved_in_the_flat_layout_resumes_exactly(av_run):
    """Runs started before ``optim.*`` existed saved lr, epochs, batch_size, weight_decay,
    warmup_epochs and grad_clip at the top level of config.json (they trained with AdamW (0.9, 0.98)
    and warm-up + cosine), "auto" for the SentencePiece tokeniser, their best score in
    train_state.pt and no run record in meta.json: such a run resumes, translated, exactly."""
    run, base = av_run
    cut = _cut_after_epoch_1(run, base / "flat")
    saved = json.loads((cut / "config.json").read_text())
    optim = saved["config"].pop("optim")
    assert (optim["optimizer"], optim["betas"], optim["schedule"]) == ("adamw", [0.9, 0.98], "cosine")
    saved["config"].update({k: optim[k] for k in ("lr", "epochs", "batch_size", "weight_decay", "warmup_epochs",
                                                   "grad_clip")}, tokenizer="auto")
    (cut / "config.json").write_text(json.dumps(saved))
    ckpt = cut / "ckpt-00000001"
    meta = json.loads((ckpt / "meta.json").read_text())
    best = meta.pop("best_score")
    del meta["best_checkpoint"], meta["log"]
    (ckpt / "meta.json").write_text(json.dumps(meta))
    state = torch.load(ckpt / "train_state.pt", weights_only=True)
    torch.save({**state, "best": best}, ckpt / "train_state.pt")
    (cut / "best.json").write_text(json.dumps({"checkpoint": "ckpt-00000001"}))
    torch.set_num_threads(1)
    run_expert_stage(None, cut, resume=True)
    full, _, _ = load_checkpoint(run, "last")
    resumed, meta, _ = load_checkpoint(cut, "last")
    assert meta["epoch"] == 2 and meta["tokenizer"] == "spm" and meta["config"]["tokenizer"] == "spm"
    assert meta["config"]["optim"] == optim
    for k in full:
        torch.testing.assert_close(resumed[k], full[k], rtol=0, atol=0, msg=k)


def test_flat_optimiser_layout_is_translated():
    """The translation, on the config an expert_targets step (asr_char) saved before optim.*."""
    from avguide.config import load_config
    from avguide.train.optim import upgrade_saved_optim

    old = {"audio": {"speed_prob": 0.5}, "batch_size": 8, "best_on": "auto", "cache_dir": "/r/render_cache",
           "camera": "auto", "crop": 0, "data": "/r/corpus", "device": "auto", "epochs": 10, "expert": {},
           "freeze_audio": False, "freeze_heads": False, "grad_clip": 5.0, "init": None, "init_audio": None,
           "lr": 0.001, "modality": "audio", "seed": 0, "size": "cpu_small", "tokenizer": "char",
           "train_split": "train", "val_max": 80, "val_split": "val", "warmup_epochs": 1.0, "weight_decay": 0.03}
    new = upgrade_saved_optim(old, "expert")
    assert not set(new) & {"lr", "epochs", "batch_size", "weight_decay", "warmup_epochs", "grad_clip"}
    cfg = load_config(ExpertStageConfig, base=new)
    assert dataclasses.asdict(cfg.optim) == {"optimizer": "adamw", "lr": 0.001, "betas": (0.9, 0.98),
                                             "weight_decay": 0.03, "epochs": 10, "batch_size": 8, "grad_clip": 5.0,
                                             "schedule": "cosine", "warmup_epochs": 1.0,
                                             "patience": 0, "min_improvement": 0.0}  # saved before early stopping
    assert upgrade_saved_optim(new, "expert") == new  # today's layout is left as it is
    # animator runs saved before optim.optimizer: Adam, or AdamW with weight decay
    assert upgrade_saved_optim({"optim": {"lr": 1e-3}}, "animator")["optim"]["optimizer"] == "adam"
    assert upgrade_saved_optim({"optim": {"weight_decay": 0.1}}, "animator")["optim"]["optimizer"] == "adamw"
    with pytest.raises(BadInputError, match="under optim"):
        run_expert_stage("x", "y", overrides=["lr=1e-3"])


def test_video_modality_and_bad_config(synth3x2, tmp_path):
    run = run_expert_stage(str(synth3x2), tmp_path / "v", modality="video",
                           overrides=TINY + ["optim.epochs=1", f"cache_dir={tmp_path / 'c'}"])
    expert = load_trained_expert(run)
    assert expert.model.cfg.modality == "video" and expert.model.aux_encoder is None
    assert expert.camera == "sequence_mean" and expert.crop == 16
    with pytest.raises(BadInputError, match="already holds a run"):
        run_expert_stage(str(synth3x2), tmp_path / "v", modality="video", overrides=TINY)
    with pytest.raises(BadInputError) as err:  # every problem in one message
        run_expert_stage(str(synth3x2), tmp_path / "w", overrides=["expert.nope=1", "optim.batch_size=0"])
    assert "expert: unknown field(s) ['nope']" in str(err.value) and "batch_size: must be >= 1" in str(err.value)


def test_audio_modality_pretrains_the_av_audio_encoder(synth3x2, tmp_path):
    """An audio-only run renders nothing; its encoder initialises an AV expert's aux_encoder
    exactly (and its heads when there is no visual init); misuse gives one clear message."""
    torch.set_num_threads(1)
    asr = run_expert_stage(str(synth3x2), tmp_path / "asr", modality="audio",
                           overrides=TINY + ["optim.epochs=1", f"cache_dir={tmp_path / 'c'}"])
    assert not (tmp_path / "c").exists() and not (asr / "render_cache").exists()
    a = load_trained_expert(asr).model
    assert a.cfg.modality == "audio" and a.aux_encoder is None and a.fusion is None
    assert type(a.encoder.frontend).__name__ == "MelFrontend"  # the cpu_small presets read log-mel audio
    line = json.loads((asr / "metrics.jsonl").read_text().splitlines()[-1])
    assert math.isfinite(line["train_total"]) and line["val_cer"] >= 0 and line["render_s"] == 0

    av = run_expert_stage(str(synth3x2), tmp_path / "av", modality="av",
                          overrides=TINY + ["optim.epochs=1", "optim.lr=1e-12", f"init_audio={asr}",
                                            f"cache_dir={tmp_path / 'c'}"])
    first, _, _ = load_checkpoint(av, "last")  # lr 1e-12: one step leaves the loaded parameters as they were
    params = dict(a.named_parameters())  # (batch-norm running statistics move in any training step)
    assert sum(k.startswith("encoder.") for k in params) > 10
    for k, v in params.items():
        if k.startswith("encoder."):
            torch.testing.assert_close(first["aux_encoder." + k[len("encoder."):]], v, rtol=0, atol=1e-9)
        else:  # no visual init: the CTC head and the decoder come from the audio run too
            torch.testing.assert_close(first[k], v, rtol=0, atol=1e-9)
    frozen = run_expert_stage(str(synth3x2), tmp_path / "frozen", modality="av",
                              overrides=TINY + ["optim.epochs=1", "optim.lr=1e-2", f"init_audio={asr}", "freeze_audio=true",
                                                f"cache_dir={tmp_path / 'c'}"])
    after, _, _ = load_checkpoint(frozen, "last")  # lr 1e-2: everything not frozen moves
    source = a.state_dict()  # parameters and batch-norm statistics
    for k, v in after.items():
        if k.startswith("aux_encoder."):
            assert torch.equal(v, source["encoder." + k[len("aux_encoder."):]]), k
    assert not torch.equal(after["ctc.ctc_lo.weight"], source["ctc.ctc_lo.weight"])
    adapter = run_expert_stage(str(synth3x2), tmp_path / "adapter", modality="av",
                               overrides=TINY + ["optim.epochs=1", "optim.lr=1e-2", f"init_audio={asr}", "freeze_audio=true",
                                                 "freeze_heads=true", f"cache_dir={tmp_path / 'c'}"])
    after, _, _ = load_checkpoint(adapter, "last")  # only the visual encoder and the fusion learn
    kept = [k for k in after if k.startswith(("aux_encoder.", "ctc.", "decoder."))]
    assert len(kept) > 20 and any(k.startswith("decoder.") for k in kept)
    for k in kept:
        assert torch.equal(after[k], source[k.replace("aux_encoder.", "encoder.", 1) if k.startswith("aux_") else k]), k
    assert not torch.equal(after["fusion.fc1.weight"], first["fusion.fc1.weight"])
    with pytest.raises(BadInputError, match="freeze_heads: needs init or init_audio"):
        run_expert_stage(str(synth3x2), tmp_path / "h", modality="video", overrides=TINY + ["freeze_heads=true"])
    with pytest.raises(BadInputError, match="freeze_audio: only for modality=av with init_audio or init"):
        run_expert_stage(str(synth3x2), tmp_path / "f", modality="av", overrides=TINY + ["freeze_audio=true"])
    with pytest.raises(BadInputError, match="best_on=clean_and_dropped: only for modality=av"):
        run_expert_stage(str(synth3x2), tmp_path / "b", modality="audio", overrides=TINY + ["best_on=clean_and_dropped"])
    with pytest.raises(BadInputError, match="init_audio: only for modality=av"):
        run_expert_stage(str(synth3x2), tmp_path / "x", modality="video", overrides=TINY + [f"init_audio={asr}"])
    with pytest.raises(BadInputError, match="not an audio-only run"):
        run_expert_stage(str(synth3x2), tmp_path / "y", modality="av",
                         overrides=TINY + [f"init_audio={av}", f"cache_dir={tmp_path / 'c'}"])
    with pytest.raises(BadInputError, match="does not fit this expert's audio encoder"):
        run_expert_stage(str(synth3x2), tmp_path / "z", modality="av",
                         overrides=TINY + [f"init_audio={asr}", "expert.aux_elayers=2", f"cache_dir={tmp_path / 'c'}"])


def test_ctc_unfit_share_is_logged_and_explained(tmp_path, capsys):
    """Speech at 420-450 wpm has more characters than the 25 fps encoder has frames: the share of
    such training recordings (from the wav lengths and texts, counted here independently) is
    logged, with a warning that names tokenizer=spm; with that tokeniser every recording fits."""
    import soundfile as sf

    from avguide.config import load_config
    from avguide.data.layouts import open_dataset
    from avguide.lipreader.reader import make_tokenizer
    from avguide.synth.generator import SynthConfig, generate

    data = tmp_path / "fast"
    generate(load_config(SynthConfig, None, ["subjects=3", "sentences=2", "workers=1", "rate_wpm_min=420",
                                             "rate_wpm_max=450"]), data)
    index = open_dataset(data)

    def share(tokenizer: str) -> float:
        tok, unfit = make_tokenizer(tokenizer), []
        for ref in index.split("train"):
            ids = tok.encode(ref.text)
            need = len(ids) + sum(a == b for a, b in zip(ids, ids[1:]))
            unfit.append(need > sf.info(str(ref.wav)).frames // 640)
        return sum(unfit) / len(unfit)

    assert share("char") > 0 and share("spm") == 0
    runs = {}
    for tokenizer, extra in (("char", []), ("spm", [f"init={tmp_path / 'char'}", "optim.lr=1e-12"])):
        runs[tokenizer] = run_expert_stage(str(data), tmp_path / tokenizer, modality="audio",
                                           overrides=TINY + ["optim.epochs=1", "optim.batch_size=8",
                                                             f"tokenizer={tokenizer}"] + extra)
        line = json.loads((runs[tokenizer] / "metrics.jsonl").read_text().splitlines()[-1])
        assert line["train_ctc_unfit"] == pytest.approx(share(tokenizer))
        out = capsys.readouterr().out
        assert ("CTC cannot align them" in out) == (tokenizer == "char")
    # the char run initialises the spm run: all but the vocabulary-sized layers, which are named
    assert "keep their fresh initialisation: ctc.ctc_lo, decoder.embed.0, decoder.output_layer" in out
    char, spm = load_trained_expert(runs["char"]).model, load_trained_expert(runs["spm"]).model
    assert spm.ctc.ctc_lo.weight.shape[0] == make_tokenizer("spm").odim
    for k, v in char.named_parameters():
        if k.startswith("encoder."):
            torch.testing.assert_close(dict(spm.named_parameters())[k], v, rtol=0, atol=1e-9)


def test_runs_saved_with_the_old_modality_names_load_and_resume(synth3x2, tmp_path):
    """Stage-1 checkpoints saved before the expert config said "video" / "audio" name the modality
    "v" / "a" in their meta.json (e.g. an audio-only run: its stage config says "audio", its expert
    settings "a"); today's code loads them under today's names and resumes the run."""
    torch.set_num_threads(1)
    asr = run_expert_stage(str(synth3x2), tmp_path / "asr", modality="audio", overrides=TINY + ["optim.epochs=1"])
    old = [p for p in [*asr.glob("ckpt-*/meta.json"), asr / "best.json"]
           if "expert" in json.loads(p.read_text())]
    assert old
    for path in old:  # as the run would have been written before the rename
        meta = json.loads(path.read_text())
        assert meta["expert"]["modality"] == "audio"
        meta["expert"]["modality"] = "a"
        path.write_text(json.dumps(meta))
    assert load_trained_expert(asr).model.cfg.modality == "audio"
    run_expert_stage(None, asr, overrides=["optim.epochs=2"], resume=True)
    _, meta, ckpt = load_checkpoint(asr, "last")
    assert meta["epoch"] == 2 and ckpt.name == f"ckpt-{meta['step']:08d}"
    assert meta["expert"]["modality"] == "audio"  # what it saves from now on is today's name


def test_expert_config_from_preset_and_overrides():
    cfg = ExpertStageConfig(data="x", modality="video", expert={"elayers": 2, "visual_widths": [8, 8, 16, 16]})
    e = cfg.expert_config(30)
    assert (e.modality, e.elayers, e.visual_widths, e.adim, e.odim) == ("video", 2, (8, 8, 16, 16), 192, 30)
    assert cfg.crop_size() == 44 and cfg.camera_rule() == "sequence_mean" and cfg.tokenizer_name() == "spm"
    base = ExpertStageConfig(data="x", size="base")
    assert base.crop_size() == 88 and base.camera_rule() == "template" and base.tokenizer_name() == "spm"


# ----------------------------------------------------------------------------- augmentation

def _speech_like(b=3, n=32000, seed=0):
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / 16000
    return 0.3 * torch.sin(2 * math.pi * 180 * t) * (1 + torch.rand(b, 1, generator=g)) + 0.01 * torch.randn(b, n, generator=g)


def test_noise_reaches_requested_snr():
    audio = _speech_like()
    lengths = torch.tensor([32000, 20000, 8000])
    snr = torch.tensor([0.0, 10.0, 20.0])
    noisy = add_noise(audio * (torch.arange(32000) < lengths[:, None]), lengths, snr, torch.Generator().manual_seed(1))
    for i, n in enumerate(lengths.tolist()):
        clean = audio[i, :n]
        measured = 10 * math.log10(clean.pow(2).mean() / (noisy[i, :n] - clean).pow(2).mean())
        assert abs(measured - snr[i].item()) < 0.3, (i, measured)
        assert bool((noisy[i, n:] == 0).all())  # padding untouched


def test_time_mask_spans_and_dropout():
    audio = torch.ones(4, 16000)
    lengths = torch.tensor([16000, 12000, 8000, 100])
    out = time_mask(audio, lengths, 2, 1600, torch.Generator().manual_seed(0))
    zeros = (out == 0).sum(1)
    assert bool((zeros <= 3200).all()) and int(zeros.sum()) > 0
    for i, n in enumerate(lengths.tolist()):  # masks lie inside the valid part
        assert bool((out[i, n:] == 1).all())
    g = torch.Generator().manual_seed(0)
    dropped_all, flags = augment_audio(audio, lengths, AudioAugmentConfig(dropout_prob=1.0), g)
    assert bool((dropped_all == 0).all()) and bool(flags.all())
    kept, flags = augment_audio(audio, lengths, AudioAugmentConfig(dropout_prob=0.0, noise_prob=0.0, time_masks=0), g)
    torch.testing.assert_close(kept, audio) and not bool(flags.any())
    many, flags = augment_audio(torch.ones(400, 800), torch.full((400,), 800), AudioAugmentConfig(dropout_prob=0.25, time_masks=0), g)
    assert 0.18 < flags.float().mean() < 0.32 and bool((many[flags] == 0).all()) and bool((many[~flags] != 0).any(1).all())


def test_change_speed_scales_tempo_and_pitch():
    t = torch.arange(16000) / 16000
    audio = torch.zeros(3, 16000)
    audio[:, :16000] = torch.sin(2 * math.pi * 440 * t)
    lengths = torch.tensor([16000, 16000, 8000])
    out, new = change_speed(audio, lengths, torch.tensor([1.25, 0.8, 1.0], dtype=torch.float64))
    assert new.tolist() == [12800, 20000, 8000] and out.shape == (3, 20000)
    torch.testing.assert_close(out[2, :8000], audio[2, :8000], rtol=0, atol=0)  # factor 1: the samples
    assert bool((out[0, 12800:] == 0).all()) and bool((out[2, 8000:] == 0).all())  # zero padding
    for i, f in ((0, 550.0), (1, 352.0)):  # 440 Hz played 1.25x / 0.8x as fast
        n = int(new[i])
        spec = torch.fft.rfft(out[i, n // 8: n - n // 8]).abs()  # away from the resampler's edges
        peak = float(spec.argmax()) * 16000 / (n - 2 * (n // 8))
        assert abs(peak - f) < 2.0, (i, peak)


def test_retime_frames_picks_the_frame_under_each_new_frame_centre():
    video = torch.arange(10, dtype=torch.float32)[None, :, None, None].repeat(2, 1, 1, 3) + 1  # (2, 10, 1, 3)
    out, new = retime_frames(video, torch.tensor([10, 4]), torch.tensor([2.0, 0.5], dtype=torch.float64))
    assert new.tolist() == [5, 8] and out.shape == (2, 8, 1, 3)
    # frame j shows floor((j + 0.5) * s) (+1: the values are 1-based); padding is 0
    assert out[0, :, 0, 0].tolist() == [2, 4, 6, 8, 10, 0, 0, 0]
    assert out[1, :, 0, 0].tolist() == [1, 1, 2, 2, 3, 3, 4, 4]
    same, n = retime_frames(video, torch.tensor([10, 4]), torch.ones(2, dtype=torch.float64))
    assert n.tolist() == [10, 4] and bool((same[0] == video[0]).all()) and bool((same[1, 4:] == 0).all())


def test_draw_speeds():
    g = torch.Generator().manual_seed(3)
    before = g.get_state()
    assert draw_speeds(5, AudioAugmentConfig(), g).tolist() == [1.0] * 5
    assert torch.equal(g.get_state(), before)  # off: nothing drawn, earlier runs' streams unchanged
    s = draw_speeds(1000, AudioAugmentConfig(speed_prob=0.5, speed_min=0.8, speed_max=1.2), g)
    moved = s != 1
    assert 0.42 < moved.double().mean() < 0.58 and bool(((s >= 0.8) & (s <= 1.2)).all())
    assert 0.95 < float(s[moved].mean()) < 1.05
    errs = AudioAugmentConfig(speed_min=1.2, speed_max=1.1, speed_prob=2).check()
    assert any("speed_min" in e for e in errs) and any("speed_prob" in e for e in errs)


def test_align_audio_to_video_frames():
    audio = torch.arange(2 * 3000, dtype=torch.float32).reshape(2, 3000) + 1
    out, lengths = align_audio(audio, torch.tensor([3000, 1900]), torch.tensor([4, 3]))
    assert out.shape == (2, 2560) and lengths.tolist() == [2560, 1900]
    torch.testing.assert_close(out[0], audio[0, :2560])
    assert bool((out[1, 1900:] == 0).all()) and bool((out[1, :1900] == audio[1, :1900]).all())
