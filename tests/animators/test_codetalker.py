"""CodeTalker: VQ straight-through and EMA, causal decoder caching, stage-2 cached == recompute."""

import torch

from avguide.animators import build_animator, codetalker_tiny
from avguide.animators.vqvae import DecodeStepper, MotionVQVAE, VectorQuantizer

V, S = 30, 3


def _model(seed=0):
    torch.manual_seed(seed)
    m = build_animator(codetalker_tiny(), V, S).eval()
    torch.nn.init.normal_(m.feat_map.weight, std=0.3)  # non-zero so quantised codes vary per frame
    torch.nn.init.normal_(m.vqvae.quantizer.codebook, std=0.3)
    return m


def _batch(seed=1):
    g = torch.Generator().manual_seed(seed)
    audio = torch.randn(2, 24000, generator=g) * 0.1
    audio[1, 15000:] = 0
    return audio, torch.tensor([24000, 15000]), torch.randn(2, V, 3, generator=g), torch.tensor([2, 0])


def test_straight_through_gradient_is_identity_and_codes_are_nearest():
    torch.manual_seed(0)
    q = VectorQuantizer(8, 3, beta=0.25)
    z = torch.randn(2, 5, 4, 3, requires_grad=True)
    out, loss, idx = q(z, torch.ones(2, 5, dtype=torch.bool))
    brute = ((z.detach()[..., None, :] - q.codebook.detach()).square().sum(-1)).argmin(-1)
    assert torch.equal(idx, brute)
    assert torch.allclose(out, q.codebook[idx], atol=1e-6)
    w = torch.randn_like(z)
    (out * w).sum().backward()
    assert torch.equal(z.grad, w)
    # codebook + commitment loss, by hand
    d = (z.detach() - q.codebook.detach()[idx]).square().mean()
    assert torch.allclose(loss, 1.25 * d)


def test_ema_codebook_moves_towards_assigned_vectors():
    torch.manual_seed(0)
    q = VectorQuantizer(4, 2, beta=0.25, update="ema", decay=0.5).train()
    z = torch.tensor([[[[5.0, 5.0]]]])
    idx = q.nearest(z).item()
    before = q.codebook[idx].clone()
    q(z, torch.ones(1, 1, dtype=torch.bool))
    after = q.codebook[idx]
    assert (after - z[0, 0, 0]).norm() < (before - z[0, 0, 0]).norm()
    assert not q.codebook.requires_grad


def test_causal_vq_decoder_stepper_equals_full_decode():
    torch.manual_seed(0)
    m = _model().vqvae
    codes = torch.randn(2, 17, 4, 8)
    full = m.decode(codes)
    with torch.no_grad():
        full_nograd = m.decode(codes)
        stepper = DecodeStepper(m, 17, codes)
        steps = m.readout(torch.cat([stepper.step(codes[:, t:t + 1]) for t in range(17)], 1))
    assert (full - steps).abs().max() < 1e-5
    assert (full - full_nograd).abs().max() < 1e-5  # torch's inference fast path must stay off
    # causality: changing the future does not change the past
    codes2 = codes.clone()
    codes2[:, 10:] += 1
    assert (m.decode(codes2)[:, :10] - full[:, :10]).abs().max() < 1e-5


def test_vq_encoder_batch_equals_per_sample():
    m = _model().vqvae
    x = torch.randn(2, 12, V * 3)
    both = m.encode(x, torch.tensor([12, 7]))
    alone = m.encode(x[1:, :7], torch.tensor([7]))
    assert (both[1, :7] - alone[0]).abs().max() < 1e-5


def test_cached_equals_recompute_batch_of_two():
    m = _model()
    audio, al, template, subject = _batch()
    fast = m.generate(audio, al, template, subject)
    slow = m.generate_recompute(audio, al, template, subject)
    assert fast.shape == (2, 38, V, 3)
    assert (fast - template[:, None]).abs().max() > 0.1
    assert (fast - slow).abs().max() < 1e-5
    alone = m.generate(audio[1:, :15000], al[1:], template[1:], subject[1:])
    assert (fast[1, :alone.shape[1]] - alone[0]).abs().max() < 1e-5


def test_teacher_forcing_on_own_predictions_equals_generation():
    """Teacher forcing feeds each frame the target's previous frame; fed the model's own output,
    it must reproduce that output (the shift, the frame-0 token of zero offsets, the codec)."""
    m = _model()
    m.vqvae.motion_scale.fill_(0.05)
    torch.nn.init.normal_(m.vertice_map.weight, std=2.0)  # the fed-back frame decides the codes
    audio, al, template, subject = _batch()
    gen = m.generate(audio, al, template, subject)
    m.cfg.teacher_forcing = True
    out = m(audio, al, template, gen, torch.tensor([38, 23]), subject)  # ground truth = the model's own output
    assert (gen - template[:, None]).abs().max() > 0.01
    assert (out["pred"][0] - gen[0]).abs().max() < 1e-5
    assert (out["pred"][1, :23] - gen[1, :23]).abs().max() < 1e-5
    assert out["losses"]["mse"] < 1e-10


def test_stage2_training_losses_and_frozen_vqvae():
    m = _model().train()
    audio, al, template, subject = _batch()
    target = torch.randn(2, 38, V, 3)
    lengths = torch.tensor([38, 23])
    out = m(audio, al, template, target, lengths, subject)
    assert set(out["losses"]) == {"mse", "reg"}
    assert not m.vqvae.training  # frozen stage-1 model stays in eval mode
    sum(out["losses"].values()).backward()
    assert m.feat_map.weight.grad.abs().sum() > 0  # through the straight-through estimator
    assert all(p.grad is None for p in m.vqvae.parameters())
    m.cfg.teacher_forcing = False
    out = m(audio, al, template, target, lengths, subject)
    gen = m.eval().generate(audio, al, template, subject)
    assert (out["pred"][0] - gen[0]).abs().max() < 1e-5


def test_stage1_trains_only_the_vqvae():
    m = _model()
    m.set_stage(1)
    m.train()
    audio, al, template, subject = _batch()
    target = torch.randn(2, 9, V, 3)
    out = m(audio, al, template, target, torch.tensor([9, 6]), subject)
    assert set(out["losses"]) == {"rec", "vq"}
    sum(out["losses"].values()).backward()
    assert m.vqvae.enc_in.weight.grad.abs().sum() > 0 and m.vqvae.quantizer.codebook.grad is not None
    assert all(p.grad is None for n, p in m.named_parameters() if not n.startswith("vqvae."))


def test_published_vq_sizes():
    vq = MotionVQVAE(codetalker_tiny().vq, V)
    assert vq.quantizer.codebook.shape == (16, 8)
    from avguide.animators import codetalker_biwi, codetalker_vocaset
    assert (codetalker_vocaset().vq.n_codes, codetalker_vocaset().vq.code_dim) == (16, 64)
    assert (codetalker_biwi().vq.n_codes, codetalker_biwi().vq.code_dim) == (8, 128)


def test_attention_windows_cached_equal_recompute():
    """CodeTalker with windows in its predictor (context) and in its VQ decoder (vq.context):
    cached decoding equals the windowed full-prefix reference, and the windows bind."""
    audio, al, template, subject = _batch()
    full = _model().generate(audio, al, template, subject)
    m = _model()
    m.cfg.context, m.vqvae.cfg.context = 5, 4
    fast = m.generate(audio, al, template, subject)
    assert (fast - m.generate_recompute(audio, al, template, subject)).abs().max() < 1e-5
    assert (fast - full).abs().max() > 1e-4
