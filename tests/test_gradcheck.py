"""Central differences against the hand-written backward (float64, no torch)."""
import pytest

from rnnlab.tools.gradcheck import TOL, GradCase, check_layer, default_cases

CASES = default_cases(seed=5)


@pytest.mark.parametrize("case", CASES, ids=[c.label() for c in CASES])
def test_gradcheck(case):
    errs = check_layer(case)
    assert set(errs) >= {"x", "h0", "weight_ih_l0", "weight_hh_l0"}
    bad = {k: v for k, v in errs.items() if not v <= TOL}
    assert not bad, bad


def test_gradcheck_detects_a_wrong_backward(monkeypatch):
    """A gradient check that cannot fail is no check: break GRU's backward and see it fail."""
    import dataclasses
    from rnnlab import cells
    from rnnlab.cells import gru
    real_back = gru.back

    def wrong(dh, dc, cache, dgx, dgr):
        dh_direct, dc_prev = real_back(dh, dc, cache, dgx, dgr)
        return dh_direct * 0.5, dc_prev
    broken = dataclasses.replace(gru.FAMILY, back=wrong)
    monkeypatch.setitem(cells.FAMILIES, "gru", broken)
    monkeypatch.setitem(cells._BY_MODE, "GRU", broken)
    errs = check_layer(GradCase("gru"))
    assert max(errs.values()) > 1e-3
