"""Shared by the fuzz tests: junk values and the checks that a call fails only with a
clear ValueError / TypeError, changes nothing and warns nothing."""
import contextlib
import io
import warnings

import numpy as np
from hypothesis import strategies as st

from rnnlab.tools import cli

JUNK = st.one_of(
    st.none(), st.integers(-3, 3), st.floats(allow_nan=True), st.text(max_size=3),
    st.lists(st.integers(-2, 6), max_size=4),
    st.builds(lambda s, dt: np.ones(s, dtype=dt),
              st.lists(st.integers(0, 6), min_size=0, max_size=4).map(tuple),
              st.sampled_from([np.float32, np.float64, np.int64, np.complex128, bool, object])),
    st.builds(lambda s: np.full(s, np.nan), st.lists(st.integers(0, 5), max_size=3).map(tuple)),
    st.tuples(st.none(), st.none()), st.just({"a": 1}))


def snapshot(m):
    return ({k: v.copy() for k, v in m.state_dict().items()},
            {k: v.copy() for k, v in m.grads.items()}, m.last_call if hasattr(m, "last_call")
            else m.pending)


def unchanged(m, snap):
    params, grads, rec = snap
    for k, v in m.state_dict().items():
        np.testing.assert_array_equal(v, params[k], err_msg=k)
    assert set(m.grads) == set(grads)
    for k, v in m.grads.items():
        np.testing.assert_array_equal(v, grads[k], err_msg=k)
    assert rec is (m.last_call if hasattr(m, "last_call") else m.pending) or rec == m.pending


def only_clear_errors(fn):
    """Run fn: success, or ValueError/TypeError with a message; no warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            fn()
        except (ValueError, TypeError) as exc:
            assert str(exc), f"{type(exc).__name__} without a message"
            return False
    return True


def cli_exits_cleanly(argv):
    """The command ends with exit code 0/1/2 (argparse's usage errors included), never a
    traceback or a warning."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            try:
                code = cli.main(argv)
            except SystemExit as exc:                   # argparse: usage errors, --help
                code = exc.code
    assert code in (0, 1, 2, None), (argv, code)
    assert "Traceback" not in err.getvalue(), (argv, err.getvalue())
