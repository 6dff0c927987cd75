"""The network's set means, leave-the-target-out and zero-shot rules against naive loops."""

import numpy as np
import pytest
import torch

from c3tl_sklearn.network import CONTEXT_INPUTS, C3TLNetwork


def make_net(residual, seed=0, **kwargs):
    torch.manual_seed(seed)
    n_genes, n_ctx, n_pert = 5, 4, 6
    net = C3TLNetwork(n_genes, n_ctx, n_pert, latent_dim=3, hidden_dims=(8,),
                      residual=residual, **kwargs)
    rng = np.random.RandomState(seed)
    pairs = [(c, p) for c in range(n_ctx) for p in range(n_pert) if rng.rand() < 0.75]
    ctx = torch.tensor([c for c, _ in pairs])
    pert = torch.tensor([p for _, p in pairs])
    x = torch.randn(len(pairs), n_genes)
    net.set_observations(x, ctx, pert)
    return net, x, ctx, pert


def naive_prediction(net, x, ctx, pert, c, p, exclude_row=None):
    """The paper's formula with explicit loops over the sets."""
    hz, hpsi = net.encode_rows(x, ctx, pert)
    rows_p = [i for i in range(len(x)) if pert[i] == p and i != exclude_row]
    rows_c = [i for i in range(len(x)) if ctx[i] == c and i != exclude_row]
    z = hz[rows_p].mean(0)
    psi = hpsi[rows_c].mean(0)
    out = net.gamma(z + psi)
    if net.residual:
        out = out + x[rows_p].mean(0)
    return out


@pytest.mark.parametrize("context_input", CONTEXT_INPUTS)
@pytest.mark.parametrize("residual", [False, True])
def test_eval_forward_matches_set_means(residual, context_input):
    net, x, ctx, pert = make_net(residual, context_input=context_input)
    net.eval()
    observed = {(int(c), int(p)) for c, p in zip(ctx, pert, strict=True)}
    queries = [(c, p) for c in range(4) for p in range(6)
               if any(int(q) == p for q in pert)][:10]
    pairs = torch.tensor([[c, p, -1] for c, p in queries])
    with torch.no_grad():
        out = net(pairs)
        for k, (c, p) in enumerate(queries):
            expected = naive_prediction(net, x, ctx, pert, c, p)
            torch.testing.assert_close(out[k], expected, rtol=1e-5, atol=1e-6)
    assert any(q in observed for q in queries) and any(q not in observed for q in queries)


@pytest.mark.parametrize("context_input", CONTEXT_INPUTS)
@pytest.mark.parametrize("residual", [False, True])
def test_training_forward_leaves_the_target_out(residual, context_input):
    net, x, ctx, pert = make_net(residual, seed=1, context_input=context_input)
    net.train()  # dropout is 0, so training mode is deterministic here
    n_p = torch.bincount(pert, minlength=6)
    n_c = torch.bincount(ctx, minlength=4)
    rows = [i for i in range(len(x)) if n_p[pert[i]] > 1 and n_c[ctx[i]] > 1][:8]
    pairs = torch.tensor([[int(ctx[i]), int(pert[i]), i] for i in rows])
    with torch.no_grad():
        out = net(pairs)
        for k, i in enumerate(rows):
            expected = naive_prediction(net, x, ctx, pert, int(ctx[i]), int(pert[i]),
                                        exclude_row=i)
            torch.testing.assert_close(out[k], expected, rtol=1e-5, atol=1e-6)


def test_autoencoder_training_keeps_the_target_in():
    net, x, ctx, pert = make_net(False, seed=2, leave_target_out=False)
    net.train()
    pairs = torch.tensor([[int(ctx[0]), int(pert[0]), 0]])
    with torch.no_grad():
        expected = naive_prediction(net, x, ctx, pert, int(ctx[0]), int(pert[0]))
        torch.testing.assert_close(net(pairs)[0], expected, rtol=1e-5, atol=1e-6)


def test_unknown_context_uses_the_mean_context_code():
    net, _, _, pert = make_net(False, seed=3)
    net.eval()
    with torch.no_grad():
        psi = net.codes().psi
        out = net(torch.tensor([[-1, int(pert[0]), -1]]))
        z = net.codes().z
        torch.testing.assert_close(out[0], net.gamma(z[pert[0]] + psi.mean(0)))


@pytest.mark.parametrize("context_input", CONTEXT_INPUTS)
def test_extra_observations_change_only_their_context_code(context_input):
    net, *_ = make_net(True, seed=4, context_input=context_input)
    net.eval()
    with torch.no_grad():
        z0, psi0 = net.codes()[:2]
        extra = (torch.randn(2, 5), torch.tensor([1, 4]), torch.tensor([0, 2]))
        z1, psi1 = net.codes(extra)[:2]
    torch.testing.assert_close(z1, z0)
    assert psi1.shape == (5, 3)  # a fifth, new context
    torch.testing.assert_close(psi1[[0, 2, 3]], psi0[[0, 2, 3]])
    assert not torch.allclose(psi1[1], psi0[1])
    # the new context is encoded from its single observation alone
    with torch.no_grad():
        _, hpsi = net.encode_rows(extra[0][1:], torch.tensor([-1]), extra[2][1:],
                                  stored=False)
    torch.testing.assert_close(psi1[4], hpsi[0])


def test_context_subsampling_only_in_training():
    net, x, ctx, pert = make_net(False, seed=5, context_keep_min=0.2)
    pairs = torch.tensor([[int(ctx[i]), int(pert[i]), i] for i in range(len(x))])
    net.train()
    torch.manual_seed(0)
    a = net(pairs)
    b = net(pairs)
    assert not torch.allclose(a, b)  # a new subset each step
    net.eval()
    torch.testing.assert_close(net(pairs), net(pairs))


@pytest.mark.parametrize("context_input", CONTEXT_INPUTS)
@pytest.mark.parametrize("residual", [False, True])
def test_batch_sets_encode_the_batch_perturbations_only(residual, context_input):
    net, x, ctx, pert = make_net(residual, seed=6, batch_sets=True, context_input=context_input)
    net.train()
    n_p = torch.bincount(pert, minlength=6)
    batch_perts = [p for p in range(6) if n_p[p] > 1][:2]
    rows = [i for i in range(len(x)) if int(pert[i]) in batch_perts]
    pairs = torch.tensor([[int(ctx[i]), int(pert[i]), i] for i in rows])
    sub_x, sub_ctx, sub_pert = x[rows], ctx[rows], pert[rows]
    checked = 0
    with torch.no_grad():
        out = net(pairs)
        for k, i in enumerate(rows):
            # the same formula on the batch's observations alone
            c, p = int(ctx[i]), int(pert[i])
            rows_c = [j for j in range(len(rows)) if sub_ctx[j] == c and j != k]
            if not rows_c:
                continue  # no other pair of this context in the batch: see below
            expected = naive_prediction(net, sub_x, sub_ctx, sub_pert, c, p, exclude_row=k)
            torch.testing.assert_close(out[k], expected, rtol=1e-5, atol=1e-6)
            checked += 1
        assert checked >= 3
        # every perturbation is observed twice or more here, so a batch of all
        # pairs is the exact full-data forward
        assert (n_p > 1).all()
        full = torch.tensor([[int(ctx[i]), int(pert[i]), i] for i in range(len(x))])
        net.batch_sets = False
        exact = net(full)
        net.batch_sets = True
        torch.testing.assert_close(net(full), exact)


def test_batch_sets_context_alone_in_batch_gets_the_mean_code():
    torch.manual_seed(0)
    net = C3TLNetwork(3, 2, 2, latent_dim=2, hidden_dims=(4,), residual=False, batch_sets=True)
    # context 1 has one pair of perturbation 0 and one of perturbation 1
    x = torch.randn(4, 3)
    ctx, pert = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 0, 1])
    net.set_observations(x, ctx, pert)
    net.train()
    with torch.no_grad():
        out = net(torch.tensor([[0, 0, 0], [1, 0, 2]]))
        hz, hpsi = net.encode_rows(x[[0, 2]], ctx[[0, 2]], pert[[0, 2]])
        # pair (1, 0) leaves context 1 with nothing in the batch: mean of the
        # batch's context codes (context 0 from row 0, context 1 from row 2)
        mean_psi = (hpsi[0] + hpsi[1]) / 2
        torch.testing.assert_close(out[1], net.gamma(hz[0] + mean_psi))
        # pair (0, 0) keeps nothing of context 0 either
        torch.testing.assert_close(out[0], net.gamma(hz[1] + mean_psi))


@pytest.mark.parametrize("context_input", CONTEXT_INPUTS)
def test_codes_in_blocks_equal_one_pass(context_input):
    net, *_ = make_net(True, seed=7, context_input=context_input)
    net.eval()
    extra = (torch.randn(3, 5), torch.tensor([0, 4, 4]), torch.tensor([1, 2, 3]))
    with torch.enable_grad():  # autograd on: a single pass over all rows
        z1, psi1 = net.codes(extra)[:2]
    net.chunk_rows = 4  # many blocks, the last one partial
    with torch.no_grad():
        z2, psi2 = net.codes(extra)[:2]
    torch.testing.assert_close(z2, z1.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(psi2, psi1.detach(), rtol=1e-5, atol=1e-6)


def naive_departures(x, pert, reference_x=None, reference_pert=None):
    """Each row minus the mean of its perturbation's other stored rows (0 without any)."""
    out = torch.zeros_like(x)
    for i in range(len(x)):
        if reference_x is None:  # stored rows: the others of the perturbation
            others = [j for j in range(len(x)) if pert[j] == pert[i] and j != i]
            rows = x[others]
        else:
            rows = reference_x[reference_pert == pert[i]]
        if len(rows):
            out[i] = x[i] - rows.mean(0)
    return out


def test_departure_input_is_the_effect_input_of_departures():
    net, x, ctx, pert = make_net(True, seed=8, context_input="departure")
    # perturbation 0 keeps one observation: it has no others to depart from
    keep = (pert != 0) | (torch.arange(len(pert)) == int(torch.nonzero(pert == 0)[0]))
    x, ctx, pert = x[keep], ctx[keep], pert[keep]
    net.set_observations(x, ctx, pert)
    paper = C3TLNetwork(5, 4, 6, latent_dim=3, hidden_dims=(8,), context_input="effect")
    paper.set_observations(x, ctx, pert)
    paper.load_state_dict(net.state_dict())
    assert int((pert == 0).sum()) == 1 and (torch.bincount(pert)[1:] > 1).all()
    extra_x, extra_ctx, extra_pert = torch.randn(3, 5), torch.tensor([4, 4, 1]), pert[:3]
    with torch.no_grad():
        hz, hpsi = net.encode_rows()
        hz_e, _ = paper.encode_rows(x, ctx, pert)
        torch.testing.assert_close(hz, hz_e)
        _, expected = paper.encode_rows(naive_departures(x, pert), ctx, pert)
        torch.testing.assert_close(hpsi, expected, rtol=1e-5, atol=1e-6)
        # post-fit rows depart from the mean of every stored row of their perturbation
        _, hpsi_extra = net.encode_rows(extra_x, extra_ctx, extra_pert, stored=False)
        _, expected = paper.encode_rows(naive_departures(extra_x, extra_pert, x, pert),
                                        extra_ctx, extra_pert)
        torch.testing.assert_close(hpsi_extra, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("context_input", CONTEXT_INPUTS)
def test_departure_context_codes_ignore_a_shift_shared_by_a_perturbation(context_input):
    """Adding one vector to every observation of a perturbation moves no context code."""
    net, x, ctx, pert = make_net(True, seed=9, context_input=context_input)
    net.eval()
    p = int(torch.bincount(pert).argmax())
    shifted = x + 3.0 * (pert == p)[:, None] * torch.randn(1, 5)
    with torch.no_grad():
        psi = net.codes().psi
        net.set_observations(shifted, ctx, pert)
        psi_shifted = net.codes().psi
    moved = not torch.allclose(psi_shifted, psi, rtol=1e-5, atol=1e-6)
    assert moved == (context_input == "effect")


def test_unknown_context_input_is_refused():
    with pytest.raises(ValueError, match="context_input must be one of"):
        C3TLNetwork(5, 4, 6, context_input="raw")
