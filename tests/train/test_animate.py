"""avguide animate / say / predict_split on a tiny trained run and on the shipped default."""

import json
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from avguide.animate import animate_files, load_animator, output_names, predict_split, say
from avguide.cli import main
from avguide.errors import BadInputError
from avguide.train.animator import load_train_config, train_animator


@pytest.fixture(scope="module")
def run(toy_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "ff"
    cfg = load_train_config(None, [f"data={toy_dataset}", "preset=tiny", "optim.epochs=1", "optim.batch_size=2"], None)
    train_animator(cfg, out)
    return out


def test_animate_any_rate_and_channels(run, tmp_path, toy_dataset):
    x, sr = sf.read(toy_dataset / "wav" / "Toy02_sentence01.wav")
    sf.write(tmp_path / "s.wav", np.stack([x, x], 1), 16000)          # stereo
    import soxr
    sf.write(tmp_path / "r.wav", soxr.resample(x, 16000, 44100), 44100)  # 44.1 kHz
    a, b = animate_files([tmp_path / "s.wav", tmp_path / "r.wav"], tmp_path / "o", checkpoint=run, formats=["npy"])
    va, vb = np.load(a["outputs"]["npy"]), np.load(b["outputs"]["npy"])
    assert va.shape == (20, 24 * 3) and a["frames"] == 20 and a["fps"] == 25  # 0.8 s at 25 fps
    assert vb.shape == va.shape and np.abs(va - vb).max() < 1e-3            # resampling barely matters
    # the output is exactly what the model's cached generate gives for the template
    anim = load_animator(run)
    assert np.isfinite(va).all() and a["subject"] == anim.train_subjects[0]


def test_animate_errors(run, tmp_path):
    sf.write(tmp_path / "quiet.wav", np.zeros(16000), 16000)
    with pytest.raises(BadInputError, match="silent"):
        animate_files([tmp_path / "quiet.wav"], tmp_path / "o", checkpoint=run, formats=["npy"])
    sf.write(tmp_path / "ok.wav", 0.1 * np.sin(np.arange(16000) / 5.0), 16000)
    with pytest.raises(BadInputError, match="unknown; this model knows the speaking styles of Toy01"):
        animate_files([tmp_path / "ok.wav"], tmp_path / "o", checkpoint=run, subject="Nobody", formats=["npy"])
    np.save(tmp_path / "t.npy", np.zeros((5, 3), np.float32))
    with pytest.raises(BadInputError, match="template has 5 vertices, the model animates 24"):
        animate_files([tmp_path / "ok.wav"], tmp_path / "o", checkpoint=run, template=tmp_path / "t.npy",
                      formats=["npy"])
    with pytest.raises(BadInputError, match=r"--formats arkit: ARKit weights \(its blendshapes\) need the embedded head \(4742"):
        animate_files([tmp_path / "ok.wav"], tmp_path / "o", checkpoint=run, formats=["arkit"])
    with pytest.raises(BadInputError, match=r"--formats articulation: the articulation report \(its lip regions\) need the embedded head"):
        animate_files([tmp_path / "ok.wav"], tmp_path / "o", checkpoint=run, formats=["npy"], transcripts=["Hi."])
    with pytest.raises(BadInputError, match="--formats articulation: give --transcript TEXT for each speech file"):
        animate_files([tmp_path / "ok.wav"], tmp_path / "o", checkpoint=run, formats=["articulation"])
    with pytest.raises(BadInputError, match="--transcript: 2 given for 1 speech file"):
        animate_files([tmp_path / "ok.wav"], tmp_path / "o", checkpoint=run, formats=["npy"], transcripts=["a", "b"])
    with pytest.raises(BadInputError, match="unknown format"):
        animate_files([tmp_path / "ok.wav"], tmp_path / "o", checkpoint=run, formats=["gif"])
    (tmp_path / "afile").write_text("x")
    with pytest.raises(BadInputError, match="not a directory"):  # checked before any work
        animate_files([tmp_path / "ok.wav"], tmp_path / "afile", checkpoint=run, formats=["npy"])
    assert not (tmp_path / "o").exists()  # every refusal above came before anything was written
    assert main(["animate", str(tmp_path / "ok.wav"), "--checkpoint", str(tmp_path / "none"), "-o", str(tmp_path)]) == 2


def test_predict_split_then_evaluate(run, tmp_path, toy_dataset):
    paths = predict_split(run, toy_dataset, "test", tmp_path / "pred")
    assert sorted(p.name for p in paths) == ["Toy03_sentence01.npy", "Toy03_sentence02.npy", "Toy03_sentence03.npy"]
    assert main(["evaluate", "--pred", str(tmp_path / "pred"), "--data", str(toy_dataset),
                 "-o", str(tmp_path / "report.json"), "split=test"]) == 0
    import json
    rep = json.loads((tmp_path / "report.json").read_text())
    assert rep["summary"]["lve"]["count"] == 3 and rep["summary"]["count_sequences"] == 3
    assert rep["config"]["reader_decode"] == {"decode": "greedy", "beam": 10, "ctc_weight": 0.1, "ctc_prune": None,
                                           "length_bonus": 0.0}


def test_animate_data_puts_each_recording_on_its_own_face(run, tmp_path, toy_dataset, capsys):
    from avguide.data.layouts import open_dataset

    assert main(["animate", "--data", str(toy_dataset), "--split", "all", "--checkpoint", str(run),
                 "-o", str(tmp_path / "pred")]) == 0
    assert "avguide evaluate --pred" in capsys.readouterr().out
    index = open_dataset(toy_dataset)
    anim = load_animator(run)
    for ref in index.samples:  # each on its subject's face: the first frame is near that template, not another's
        first = np.load(tmp_path / "pred" / f"{ref.name}.npy")[0].reshape(-1, 3)
        dist = {s: np.abs(first - t).mean() for s, t in index.templates.items()}
        assert min(dist, key=dist.get) == ref.subject
    assert len(list((tmp_path / "pred").glob("*.npy"))) == len(index.samples) and anim.fps == index.fps
    with pytest.raises(SystemExit):
        main(["animate", "x.wav", "--data", str(toy_dataset), "-o", str(tmp_path / "p3")])
    assert re.search("--data animates a dataset's recordings .* give no speech file", capsys.readouterr().err)
    for args, message in ((["--data", str(toy_dataset)], "its meshes have 24 vertices, the model .* animates 4742"),
                          (["--data", str(toy_dataset), "--split", "tset"], "unknown split 'tset'")):
        assert main(["animate", *args, "-o", str(tmp_path / "p3")]) == 2
        assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "p3").exists()


def test_inputs_with_one_stem_get_their_own_outputs(run, tmp_path):
    assert output_names(["x/a.wav", "y/a.mp3", "b.wav", "z/a.wav"]) == ["a_wav", "a_mp3", "b", "a_wav_2"]
    sf.write(tmp_path / "a.wav", 0.1 * np.sin(np.arange(16000) / 5.0), 16000)
    sf.write(tmp_path / "a.flac", 0.1 * np.sin(np.arange(24000) / 3.0), 16000)
    r = animate_files([tmp_path / "a.wav", tmp_path / "a.flac"], tmp_path / "o", checkpoint=run, formats=["npy"])
    assert [x["name"] for x in r] == ["a_wav", "a_flac"]
    assert [np.load(x["outputs"]["npy"]).shape[0] for x in r] == [25, 38]


def test_a_codetalker_stage1_run_is_refused(toy_dataset, tmp_path):
    out = tmp_path / "vq"
    cfg = load_train_config(None, [f"data={toy_dataset}", "preset=tiny", "animator=codetalker", "stage=vq",
                                   "optim.epochs=1", "optim.batch_size=2"], None)
    train_animator(cfg, out)
    sf.write(tmp_path / "ok.wav", 0.1 * np.sin(np.arange(16000) / 5.0), 16000)
    with pytest.raises(BadInputError, match="stage-1 .* cannot animate speech"):
        animate_files([tmp_path / "ok.wav"], tmp_path / "o", checkpoint=out, formats=["npy"])


def test_say_with_the_shipped_default(tmp_path):
    """The shipped model loads (sha256 checked) and animates espeak-ng speech; its ARKit CSV reads
    back to weights that rebuild the vertices within the fit's reported error."""
    from avguide.assets.head import load_head
    from avguide.export import read_arkit_csv

    r = say("Hello there.", tmp_path, formats=["npy", "arkit"], progress=False)
    verts = np.load(r["outputs"]["npy"]).reshape(r["frames"], -1, 3)
    assert r["fps"] == 30 and r["frames"] == round(r["seconds"] * 30) and np.isfinite(verts).all()
    weights, fps = read_arkit_csv(r["outputs"]["arkit"], fps=30)
    head = load_head()
    anim = load_animator("default")
    template = anim.templates[anim.train_subjects[0]]
    rebuilt = template + np.einsum("tk,kvc->tvc", weights, head.blendshapes)
    import json
    fit = json.loads((tmp_path / f"{r['name']}_arkit.json").read_text())["reconstruction"]
    rms_mm = 1e3 * np.sqrt(((rebuilt - verts) ** 2).sum(-1).mean())
    assert weights.shape == (r["frames"], 52) and 0 <= weights.min() and weights.max() <= 1
    assert rms_mm == pytest.approx(fit["rms_error_mm"], rel=0.05, abs=1e-3)  # CSV keeps 6 decimals


def test_articulation_reports_of_say_and_of_a_recording_with_its_transcript(tmp_path, capsys):
    """``say`` judges the lips on espeak-ng's own phone timings; ``animate --transcript`` on the
    transcript aligned to the recording. Each report equals the metric recomputed from the written
    vertices and phones, and the aligned phones are the ones espeak-ng gave the recording."""
    from avguide.assets.head import load_head
    from avguide.io import save_wav
    from avguide.metrics.articulation import articulation_without_truth
    from avguide.speech.espeak import Voice, speak

    text = "Bob bought a big blue map, and Pam put the apples back."
    r = say(text, tmp_path / "say", formats=["npy", "articulation"], progress=False)
    report = json.loads(Path(r["outputs"]["articulation"]).read_text())
    assert report["phones_source"] == "espeak-ng's own phone timings" and "avguide_version" in report
    anim = load_animator("default")
    template = anim.templates[anim.train_subjects[0]]
    head = load_head()
    verts = np.load(r["outputs"]["npy"]).reshape(r["frames"], -1, 3)
    again = articulation_without_truth(verts, report["phones"], 30.0, head.regions["lips"], head.regions["upper_lip"],
                                       head.regions["lower_lip"], template)
    got = report["articulation"]
    assert got["bilabial_segments"] == again["bilabial_segments"] >= 8
    assert got["bilabial_closed"] == again["bilabial_closed"] and got["unit"] == "mm"
    assert got["open_vowel_opening"] == pytest.approx(1000 * again["open_vowel_opening"], rel=1e-5)
    assert r["articulation"] == got

    take = speak(text, Voice(variant="f2", rate_wpm=210, pitch=65))  # another voice, faster
    save_wav(tmp_path / "take.wav", np.concatenate([np.zeros(8000, np.float32), take.audio]))
    assert main(["animate", str(tmp_path / "take.wav"), "--transcript", text, "--formats", "npy", "-o",
                 str(tmp_path / "an"), "--no-progress"]) == 0
    assert "articulation: " in capsys.readouterr().out
    aligned = json.loads((tmp_path / "an" / "take_articulation.json").read_text())
    assert aligned["phones_source"].startswith("the transcript aligned") and aligned["alignment_doubtful"] is False
    spoken = [p for p in aligned["phones"] if p[0] != "_"]
    truth = [p for p in take.phones if p.ipa != "_"]
    assert [p[0] for p in spoken] == [p.ipa for p in truth]
    assert np.median([abs(a[1] - 0.5 - b.start) for a, b in zip(spoken, truth)]) < 0.015
    # the wrong transcript: a warning naming the file, and the report marks its phones as doubtful
    assert main(["animate", str(tmp_path / "take.wav"), "--transcript", "My mother makes the best plum jam by the "
                 "open window.", "--formats", "npy", "-o", str(tmp_path / "wrong"), "--no-progress"]) == 0
    assert f"warning: {tmp_path / 'take.wav'}: the recording matches its transcript poorly" in capsys.readouterr().err
    assert json.loads((tmp_path / "wrong" / "take_articulation.json").read_text())["alignment_doubtful"] is True
