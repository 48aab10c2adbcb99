"""The numba code behind kernels.py, imported only when a compiled loop is first wanted
(importing numba costs ~0.5 s). Module-level functions, so numba's on-disk cache serves
every later process. Read kernels.py first.

float32 throughout (every constant is a float32: a Python float would promote the
arithmetic to float64). exp is Cephes' expf (range reduction by ln 2 in two parts, a
degree-5 polynomial, 2^n put together from its bits); tanh is Cephes' tanhf (an odd
polynomial below |x| = 0.625, 1 - 2 / (exp(2|x|) + 1) above); sigmoid 1 / (1 + exp(-x)).
All three stay within a few float32 ulps of the exact values and keep NaN, +-inf and -0.0
as NumPy does (tests/test_kernels.py). Written so that LLVM vectorises the loops over
units: no calls, no branches it cannot turn into selects, error_model="numpy" (no
ZeroDivisionError checks).
"""
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

f32 = np.float32
LOG2E, C1, C2 = f32(1.44269504088896341), f32(0.693359375), f32(-2.12194440e-4)
E0, E1, E2 = f32(1.9875691500e-4), f32(1.3981999507e-3), f32(8.3334519073e-3)
E3, E4, E5 = f32(4.1665795894e-2), f32(1.6666665459e-1), f32(5.0000001201e-1)
T0, T1, T2 = f32(-5.70498872745e-3), f32(2.06390887954e-2), f32(-5.37397155531e-2)
T3, T4 = f32(1.33314422036e-1), f32(-3.33332819422e-1)
ONE, TWO, HALF, ZERO = f32(1.0), f32(2.0), f32(0.5), f32(0.0)
HI, LO, SMALL = f32(88.0), f32(-87.0), f32(0.625)


@intrinsic
def _i32_as_f32(typingctx, x):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.int32), codegen


inline = njit(cache=True, error_model="numpy", inline="always")
loop = njit(cache=True, error_model="numpy")


@inline
def _exp(x):
    """exp for float32 x in [LO, HI] (callers clamp); NaN -> NaN."""
    n = np.floor(x * LOG2E + HALF)
    n = ZERO if n != n else n
    r = x - n * C1 - n * C2
    p = ((((((E0 * r + E1) * r + E2) * r + E3) * r + E4) * r + E5) * r * r + r) + ONE
    return p * _i32_as_f32((np.int32(n) + np.int32(127)) << np.int32(23))


@inline
def _sigmoid(x):
    s = ONE / (ONE + _exp(min(max(-x, LO), HI)))
    return s if x == x else x                          # the clamp would swallow NaN


@inline
def _tanh(x):
    a = abs(x)
    z = x * x
    small = x * (ONE + ((((T0 * z + T1) * z + T2) * z + T3) * z + T4) * z)   # odd; -0 -> -0
    big = ONE - TWO / (_exp(min(a + a, HI)) + ONE)
    big = big if x > ZERO else -big
    t = small if a < SMALL else big
    return t if x == x else x                          # the clamp would swallow NaN


@inline
def _project(a, gx_tn, h_n, w_hh_t, split):
    """a[j] = (gx_tn[j] if j < split else 0) + (h_n @ w_hh_t)[j], four rows of w_hh_t per
    pass over a (a's loads and stores, not the multiplies, bound this loop)."""
    K, J = h_n.shape[0], a.shape[0]
    for j in range(split):
        a[j] = gx_tn[j]
    for j in range(split, J):
        a[j] = ZERO
    k = 0
    while k + 4 <= K:
        h0, h1, h2, h3 = h_n[k], h_n[k + 1], h_n[k + 2], h_n[k + 3]
        for j in range(J):
            a[j] += (h0 * w_hh_t[k, j] + h1 * w_hh_t[k + 1, j]) + (
                h2 * w_hh_t[k + 2, j] + h3 * w_hh_t[k + 3, j])
        k += 4
    while k < K:
        hk = h_n[k]
        for j in range(J):
            a[j] += hk * w_hh_t[k, j]
        k += 1


@njit(cache=True, error_model="numpy", fastmath={"reassoc", "contract"})
def _project_rows(a, gx_tn, h_n, w_hh, split):
    """_project for W_hh itself, (G*H, H_out) row-major (a live parameter): one dot
    product per output, summed in any order (reassoc lets LLVM vectorise it)."""
    K = h_n.shape[0]
    for j in range(a.shape[0]):
        acc = ZERO
        for k in range(K):
            acc += w_hh[j, k] * h_n[k]
        a[j] = (gx_tn[j] if j < split else ZERO) + acc


@inline
def _recurrent(a, gx_tn, h_n, w, split, rows):
    if rows:
        _project_rows(a, gx_tn, h_n, w, split)
    else:
        _project(a, gx_tn, h_n, w, split)


@loop
def lstm(gx, w_hh_t, b_rest, h0, c0, reverse, out, c_n, rows):
    """gx (T, N, 4H) input projections with b_ih + b_hh; w_hh_t (H, 4H), or with
    rows=True W_hh itself (4H, H); b_rest unused."""
    T, N, GH = gx.shape
    H = GH // 4
    a = np.empty(GH, f32)
    c_n[:] = c0
    for s in range(T):
        t = T - 1 - s if reverse else s
        prev = h0 if s == 0 else out[t + 1 if reverse else t - 1]
        for n in range(N):
            _recurrent(a, gx[t, n], prev[n], w_hh_t, GH, rows)
            for j in range(H):
                i = _sigmoid(a[j])
                f = _sigmoid(a[H + j])
                g = _tanh(a[2 * H + j])
                o = _sigmoid(a[3 * H + j])
                c = f * c_n[n, j] + i * g                                  # c' = f c + i g
                c_n[n, j] = c
                out[t, n, j] = o * _tanh(c)                                # h' = o tanh(c')


@loop
def gru(gx, w_hh_t, b_rest, h0, c0, reverse, out, c_n, rows):
    """gx (T, N, 3H) input projections with b_ih and b_hh of r, z; w_hh_t (H, 3H) (or, with
    rows=True, W_hh itself, (3H, H));
    b_rest: b_hn (H,) (zeros without bias). c0, c_n unused."""
    T, N, GH = gx.shape
    H = GH // 3
    a = np.empty(GH, f32)
    for s in range(T):
        t = T - 1 - s if reverse else s
        prev = h0 if s == 0 else out[t + 1 if reverse else t - 1]
        for n in range(N):
            hp = prev[n]
            _recurrent(a, gx[t, n], hp, w_hh_t, 2 * H, rows)   # r, z: x + h; n: W_hn h
            for j in range(H):
                hn = a[2 * H + j] + b_rest[j]                              # W_hn h + b_hn
                r = _sigmoid(a[j])
                z = _sigmoid(a[H + j])
                nn = _tanh(gx[t, n, 2 * H + j] + r * hn)                   # n
                out[t, n, j] = nn + z * (hp[j] - nn)                       # (1 - z) n + z h
