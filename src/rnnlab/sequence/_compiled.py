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
ZeroDivisionError checks). Two things that silently stop the vectorising, measured (4x
slower each): an inline helper taking an array (the unit helpers take scalars), and a
loop writing into many arrays (LLVM gives up on the runtime alias checks; the recording
and GRU's backward loop write into one scratch row u, copied out afterwards).
"""
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.extending import intrinsic

f32 = np.float32
LOG2E, C1, C2 = f32(1.44269504088896341), f32(0.693359375), f32(-2.12194440e-4)
E0, E1, E2 = f32(1.9875691500e-4), f32(1.3981999507e-3), f32(8.3334519073e-3)
E3, E4, E5 = f32(4.1665795894e-2), f32(1.6666665459e-1), f32(5.0000001201e-1)
T0, T1, T2 = f32(-5.70498872745e-3), f32(2.06390887954e-2), f32(-5.37397155531e-2)
T3, T4 = f32(1.33314422036e-1), f32(-3.33332819422e-1)
ONE, TWO, HALF, ZERO = f32(1.0), f32(2.0), f32(0.5), f32(0.0)
HI, LO, SMALL = f32(88.0), f32(-87.0), f32(0.625)
UNDER = f32(-88.72283935546875)        # -log(FLT_MAX): below it float32 exp(-x) overflows


@intrinsic
def _i32_as_f32(typingctx, x):
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())
    return types.float32(types.int32), codegen


inline = njit(cache=True, error_model="numpy", inline="always")
loop = njit(cache=True, error_model="numpy", fastmath={"contract"})   # FMA: ~15% less


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
    s = ZERO if x <= UNDER else s                      # exp(-x) = inf there: exactly 0, as
    return s if x == x else x                          # NumPy (0 * inf must stay NaN); the
                                                       # clamp would swallow NaN


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


@inline
def _rowdot(w, j, v):
    """w[j] @ v (summed in any order where the caller allows reassoc)."""
    acc = ZERO
    for k in range(v.shape[0]):
        acc += w[j, k] * v[k]
    return acc


@njit(cache=True, error_model="numpy", fastmath={"reassoc", "contract"})
def _project_rows(a, gx_tn, h_n, w_hh, split):
    """_project for W_hh itself, (G*H, H_out) row-major (a live parameter): one dot
    product per output, summed in any order (reassoc lets LLVM vectorise it)."""
    for j in range(a.shape[0]):
        a[j] = (gx_tn[j] if j < split else ZERO) + _rowdot(w_hh, j, h_n)


@inline
def _project2(a0, a1, g0, g1, p0, p1, w_hh_t, split):
    """_project for two rows at once: each loaded row of w_hh_t serves both (the loop is
    bound by loads and stores; 15% less time for the whole LSTM step at N = 16, H = 32)."""
    K, J = p0.shape[0], a0.shape[0]
    for j in range(split):
        a0[j] = g0[j]
        a1[j] = g1[j]
    for j in range(split, J):
        a0[j] = ZERO
        a1[j] = ZERO
    k = 0
    while k + 4 <= K:
        x0, x1, x2, x3 = p0[k], p0[k + 1], p0[k + 2], p0[k + 3]
        y0, y1, y2, y3 = p1[k], p1[k + 1], p1[k + 2], p1[k + 3]
        for j in range(J):
            w0, w1, w2, w3 = w_hh_t[k, j], w_hh_t[k + 1, j], w_hh_t[k + 2, j], w_hh_t[k + 3, j]
            a0[j] += (x0 * w0 + x1 * w1) + (x2 * w2 + x3 * w3)
            a1[j] += (y0 * w0 + y1 * w1) + (y2 * w2 + y3 * w3)
        k += 4
    while k < K:
        xk, yk = p0[k], p1[k]
        for j in range(J):
            a0[j] += xk * w_hh_t[k, j]
            a1[j] += yk * w_hh_t[k, j]
        k += 1


@inline
def _recurrent(A, gx_t, prev, w, split, rows):
    """A[n] = gx_t[n] (its first ``split`` columns) + prev[n] @ W for every row n: W is
    w_hh_t (H_out, G*H), or with rows=True W_hh itself (G*H, H_out)."""
    N = A.shape[0]
    if rows:
        for n in range(N):
            _project_rows(A[n], gx_t[n], prev[n], w, split)
        return
    n = 0
    while n + 2 <= N:
        _project2(A[n], A[n + 1], gx_t[n], gx_t[n + 1], prev[n], prev[n + 1], w, split)
        n += 2
    if n < N:
        _project(A[n], gx_t[n], prev[n], w, split)


@inline
def _copy(dst, src, start):
    """dst[:] = src[start:start + len(dst)]"""
    for k in range(dst.shape[0]):
        dst[k] = src[start + k]


@inline
def _lstm_unit(ai, af, ag, ao, c):
    """One LSTM unit from its pre-activations and c: (i, f, g, o, c', tanh(c')). Scalars
    in and out (an array argument here stops LLVM from vectorising the callers' loops)."""
    i, f, g, o = _sigmoid(ai), _sigmoid(af), _tanh(ag), _sigmoid(ao)
    c_new = f * c + i * g                                                  # c' = f c + i g
    return i, f, g, o, c_new, _tanh(c_new)


@inline
def _gru_unit(ar, az, xn, hn):
    """One GRU unit from its pre-activations, x W_in + b_in and W_hn h + b_hn: (r, z, n)."""
    r, z = _sigmoid(ar), _sigmoid(az)
    return r, z, _tanh(xn + r * hn)


@loop
def lstm(gx, w_hh_t, b_rest, h0, c0, reverse, out, c_n, rows, store, record):
    """gx (T, N, 4H) input projections with b_ih + b_hh; w_hh_t (H, 4H), or with
    rows=True W_hh itself (4H, H); b_rest unused. record=True (training) leaves i, f, g, o
    in gx and c', tanh(c') in store (T, N, 2H): the NumPy step's layout, which the
    backward reads (store is not touched otherwise)."""
    T, N, GH = gx.shape
    H = GH // 4
    A = np.empty((N, GH), f32)
    u = np.empty(6 * H, f32)
    c_n[:] = c0
    for s in range(T):
        t = T - 1 - s if reverse else s
        prev = h0 if s == 0 else out[t + 1 if reverse else t - 1]
        _recurrent(A, gx[t], prev, w_hh_t, GH, rows)
        for n in range(N):
            a = A[n]
            if record:                     # through u: few arrays per loop, so that
                for j in range(H):         # LLVM vectorises each one
                    i, f, g, o, c, tc = _lstm_unit(a[j], a[H + j], a[2 * H + j],
                                                   a[3 * H + j], c_n[n, j])
                    u[j], u[H + j], u[2 * H + j], u[3 * H + j] = i, f, g, o
                    u[4 * H + j], u[5 * H + j] = c, tc
                _copy(gx[t, n], u, 0)                                      # i, f, g, o
                _copy(store[t, n], u, 4 * H)                               # c', tanh(c')
                for j in range(H):
                    c_n[n, j] = u[4 * H + j]
                    out[t, n, j] = u[3 * H + j] * u[5 * H + j]             # h' = o tanh(c')
            else:
                for j in range(H):
                    i, f, g, o, c, tc = _lstm_unit(a[j], a[H + j], a[2 * H + j],
                                                   a[3 * H + j], c_n[n, j])
                    c_n[n, j] = c
                    out[t, n, j] = o * tc                                  # h' = o tanh(c')


@loop
def gru(gx, w_hh_t, b_rest, h0, c0, reverse, out, c_n, rows, store, record):
    """gx (T, N, 3H) input projections with b_ih and b_hh of r, z; w_hh_t (H, 3H) (or, with
    rows=True, W_hh itself, (3H, H));
    b_rest: b_hn (H,) (zeros without bias). c0, c_n unused. record=True leaves r, z, n in
    gx and W_hn h + b_hn in store (T, N, H), as the NumPy step does."""
    T, N, GH = gx.shape
    H = GH // 3
    A = np.empty((N, GH), f32)
    u = np.empty(4 * H, f32)
    for s in range(T):
        t = T - 1 - s if reverse else s
        prev = h0 if s == 0 else out[t + 1 if reverse else t - 1]
        _recurrent(A, gx[t], prev, w_hh_t, 2 * H, rows)       # r, z: x + h; n: W_hn h
        for n in range(N):
            a, hp = A[n], prev[n]
            if record:                     # through u, as in lstm
                for j in range(H):
                    hn = a[2 * H + j] + b_rest[j]                          # W_hn h + b_hn
                    r, z, nn = _gru_unit(a[j], a[H + j], gx[t, n, 2 * H + j], hn)
                    u[j], u[H + j], u[2 * H + j], u[3 * H + j] = r, z, nn, hn
                _copy(gx[t, n], u, 0)                                      # r, z, n
                _copy(store[t, n], u, 3 * H)                               # W_hn h + b_hn
                for j in range(H):
                    out[t, n, j] = u[2 * H + j] + u[H + j] * (hp[j] - u[2 * H + j])
            else:
                for j in range(H):
                    hn = a[2 * H + j] + b_rest[j]                          # W_hn h + b_hn
                    r, z, nn = _gru_unit(a[j], a[H + j], gx[t, n, 2 * H + j], hn)
                    out[t, n, j] = nn + z * (hp[j] - nn)                   # (1 - z) n + z h


# -- backward through time (training), the same formulas as cells/*.back ---------------
# dout (T, N, H) upstream gradient of the outputs (read only when has_dout); dh (N, H),
# dc (N, H): gradients arriving from after the last step, updated in place to those of
# h0 and c0; acts, store: the recording forward's gx and store; init, seq: the state before
# the first step and the sequence of states (LSTM: c0 and store, whose first H columns are
# c'; GRU: h0 and the outputs); w_hh: W_hh (G*H, H) row-major; dgx (T, N, G*H) receives
# d(x W_ih^T + b_ih), dgr (T, N, H) GRU's d(W_hn h + b_hn).

@loop
def lstm_back(dout, has_dout, dh, dc, acts, store, init, seq, w_hh, reverse, dgx, dgr):
    T, N, GH = acts.shape
    H = GH // 4
    for s in range(T):
        t = s if reverse else T - 1 - s                  # the forward's steps, last first
        prev = init if s == T - 1 else seq[t + 1 if reverse else t - 1]
        for n in range(N):
            da = dgx[t, n]
            for j in range(H):
                dht = dh[n, j] + dout[t, n, j] if has_dout else dh[n, j]
                i, f, g = acts[t, n, j], acts[t, n, H + j], acts[t, n, 2 * H + j]
                o, tc = acts[t, n, 3 * H + j], store[t, n, H + j]
                d = dht * o * (ONE - tc * tc) + dc[n, j]          # through h' = o tanh(c')
                da[j] = d * g * (i * (ONE - i))                   # di, through s
                da[H + j] = d * prev[n, j] * (f * (ONE - f))      # df
                da[2 * H + j] = d * i * (ONE - g * g)             # dg, through tanh
                da[3 * H + j] = dht * tc * (o * (ONE - o))        # do
                dc[n, j] = d * f                                  # c' = f c + ...
        _recurrent(dh, dh, dgx[t], w_hh, 0, False)                # dh = da W_hh


@loop
def gru_back(dout, has_dout, dh, dc, acts, store, init, seq, w_hh, reverse, dgx, dgr):
    T, N, GH = acts.shape
    H = GH // 3
    u = np.empty(5 * H, f32)
    for s in range(T):
        t = s if reverse else T - 1 - s
        prev = init if s == T - 1 else seq[t + 1 if reverse else t - 1]
        for n in range(N):
            for j in range(H):             # into u only: one array written, it vectorises
                dht = dh[n, j] + dout[t, n, j] if has_dout else dh[n, j]
                r, z, nn = acts[t, n, j], acts[t, n, H + j], acts[t, n, 2 * H + j]
                dan = dht * (ONE - z) * (ONE - nn * nn)          # dn, through tanh
                u[j] = dan * store[t, n, j] * (r * (ONE - r))    # dr = dan * hn, through s
                u[H + j] = (prev[n, j] - nn) * dht * (z * (ONE - z))   # dz = dh' (h - n)
                u[2 * H + j] = dan * r                           # d(W_hn h + b_hn)
                u[3 * H + j] = dht * z                           # through h' = ... + z h
                u[4 * H + j] = dan
            _copy(dgx[t, n, :2 * H], u, 0)                       # dr, dz, dn
            _copy(dgx[t, n, 2 * H:], u, 4 * H)
            _copy(dgr[t, n], u, 2 * H)
            _project(dh[n], u[3 * H:], u[:GH], w_hh, H)          # dh = direct + dgh W_hh


# -- one step for N rows (the driver's own time loop above LIMIT, where BLAS does the
# matmuls): the cells' step and back with their arguments (cells/lstm.py, cells/gru.py);
# gx receives the gate values, as in the NumPy step --------------------------------------

@loop
def lstm_step(gx, gh, bias, c, h_new, store):
    """bias (4H,): b_ih + b_hh, not yet in gx (the driver saves a pass over all of gx)."""
    N, GH = gx.shape
    H = GH // 4
    u = np.empty(6 * H, f32)
    a = np.empty(GH, f32)
    for n in range(N):
        for k in range(GH):            # first the sum (summing inside the unit loop: 7x
            a[k] = (gx[n, k] + bias[k]) + gh[n, k]             # slower, not vectorised)
        for j in range(H):
            i, f, g, o, cn, tc = _lstm_unit(a[j], a[H + j], a[2 * H + j], a[3 * H + j],
                                            c[n, j])
            u[j], u[H + j], u[2 * H + j], u[3 * H + j] = i, f, g, o
            u[4 * H + j], u[5 * H + j] = cn, tc
        _copy(gx[n], u, 0)                                         # i, f, g, o
        _copy(store[n], u, 4 * H)                                  # c', tanh(c')
        for j in range(H):
            h_new[n, j] = u[3 * H + j] * u[5 * H + j]              # h' = o tanh(c')


@loop
def gru_step(gx, gh, bias, b_rest, h, h_new, store):
    """bias (3H,): b_ih with b_hh of r, z; b_rest (H,): b_hn; neither yet in gx, gh."""
    N, GH = gx.shape
    H = GH // 3
    u = np.empty(4 * H, f32)
    a = np.empty(2 * H, f32)
    for n in range(N):
        for k in range(2 * H):         # as in lstm_step
            a[k] = (gx[n, k] + bias[k]) + gh[n, k]
        for j in range(H):
            hn = gh[n, 2 * H + j] + b_rest[j]                      # W_hn h + b_hn
            r, z, nn = _gru_unit(a[j], a[H + j], gx[n, 2 * H + j] + bias[2 * H + j], hn)
            u[j], u[H + j], u[2 * H + j], u[3 * H + j] = r, z, nn, hn
        _copy(gx[n], u, 0)                                         # r, z, n
        _copy(store[n], u, 3 * H)                                  # W_hn h + b_hn
        for j in range(H):
            h_new[n, j] = u[2 * H + j] + u[H + j] * (h[n, j] - u[2 * H + j])


@loop
def lstm_back_step(dh_new, dc_new, has_dc, act, c, tc, da, dc_prev):
    N, GH = act.shape
    H = GH // 4
    for n in range(N):
        for j in range(H):
            i, f, g, o = act[n, j], act[n, H + j], act[n, 2 * H + j], act[n, 3 * H + j]
            t, dht = tc[n, j], dh_new[n, j]
            d = dht * o * (ONE - t * t)                            # through h' = o tanh(c')
            d = d + dc_new[n, j] if has_dc else d
            da[n, j] = d * g * (i * (ONE - i))                     # di, through s
            da[n, H + j] = d * c[n, j] * (f * (ONE - f))           # df
            da[n, 2 * H + j] = d * i * (ONE - g * g)               # dg, through tanh
            da[n, 3 * H + j] = dht * t * (o * (ONE - o))           # do
            dc_prev[n, j] = d * f                                  # c' = f c + ...


@loop
def gru_back_step(dh_new, act, hn, h, dgx, dgr, direct):
    N, GH = act.shape
    H = GH // 3
    u = np.empty(5 * H, f32)
    for n in range(N):
        for j in range(H):             # into u only: one array written, it vectorises
            dht = dh_new[n, j]
            r, z, nn = act[n, j], act[n, H + j], act[n, 2 * H + j]
            dan = dht * (ONE - z) * (ONE - nn * nn)                # dn, through tanh
            u[j] = dan * hn[n, j] * (r * (ONE - r))                # dr = dan * hn, through s
            u[H + j] = (h[n, j] - nn) * dht * (z * (ONE - z))      # dz = dh' (h - n)
            u[2 * H + j] = dan
            u[3 * H + j] = dan * r                                 # d(W_hn h + b_hn)
            u[4 * H + j] = dht * z                                 # through h' = ... + z h
        _copy(dgx[n], u, 0)
        _copy(dgr[n], u, 3 * H)
        _copy(direct[n], u, 4 * H)


# -- the gates of one step from BLAS's products (layer.step and freeze() at batch 1-4, where
# one BLAS matrix-vector product per row reads the weights in torch's layout fastest) ----

@inline
def _pre(a, ax, ah, b_ih, b_hh, n, K, has_h):
    """a[k] = (ax[n, k] + b_ih[k]) + (ah[n, k] + b_hh[k]) for k < K (torch's sum); without
    has_h, ax already holds x W_ih^T + h W_hh^T (one [x | h] product)."""
    if has_h:
        for k in range(K):
            a[k] = (ax[n, k] + b_ih[k]) + (ah[n, k] + b_hh[k])
    else:
        for k in range(K):
            a[k] = (ax[n, k] + b_ih[k]) + b_hh[k]


@loop
def lstm_cell(ax, ah, has_h, b_ih, b_hh, c, h_new, c_new):
    """ax = x W_ih^T (N, 4H), ah = h W_hh^T (read only with has_h; without it ax is
    [x | h] [W_ih | W_hh]^T); b_ih, b_hh (4H,) (zeros without bias); c (N, H). Writes
    h_new, c_new (N, H)."""
    N, GH = ax.shape
    H = GH // 4
    a = np.empty(GH, f32)
    for n in range(N):
        _pre(a, ax, ah, b_ih, b_hh, n, GH, has_h)
        for j in range(H):
            i, f, g, o, cn, tc = _lstm_unit(a[j], a[H + j], a[2 * H + j], a[3 * H + j],
                                            c[n, j])
            c_new[n, j] = cn
            h_new[n, j] = o * tc                                   # h' = o tanh(c')


@loop
def gru_cell(ax, ah, has_h, b_ih, b_hh, h, h_new, c_new):
    """As lstm_cell for the GRU (3H columns; always has_h: its n gate needs the two parts
    apart; c_new unused)."""
    N, GH = ax.shape
    H = GH // 3
    a = np.empty(2 * H, f32)
    for n in range(N):
        _pre(a, ax, ah, b_ih, b_hh, n, 2 * H, True)                # r, z
        for j in range(H):
            r, z, nn = _gru_unit(a[j], a[H + j], ax[n, 2 * H + j] + b_ih[2 * H + j],
                                 ah[n, 2 * H + j] + b_hh[2 * H + j])
            h_new[n, j] = nn + z * (h[n, j] - nn)                  # (1 - z) n + z h


@inline
def _relu(a):
    """NumPy's maximum(a, 0): NaN stays NaN, -0.0 gives 0.0."""
    return a if a > ZERO or a != a else ZERO


@loop
def _rnn_cell(ax, ah, has_h, b_ih, b_hh, h_new, relu):
    """h' = act((x W_ih^T + b_ih) + (h W_hh^T + b_hh)), torch's sum, act = relu or tanh;
    without has_h, ax holds [x | h] [W_ih | W_hh]^T (freeze()'s joint form). One loop for
    both activations: measured within 0.05 us a call of a loop written out per flag."""
    N, H = ax.shape
    for n in range(N):
        for j in range(H):
            a = (ax[n, j] + b_ih[j]) + ((ah[n, j] + b_hh[j]) if has_h else b_hh[j])
            h_new[n, j] = _relu(a) if relu else _tanh(a)


@loop
def rnn_tanh_cell(ax, ah, has_h, b_ih, b_hh, h, h_new, c_new):
    """As lstm_cell for the Elman RNN with tanh (H columns; h and c_new unused)."""
    _rnn_cell(ax, ah, has_h, b_ih, b_hh, h_new, False)


@loop
def rnn_relu_cell(ax, ah, has_h, b_ih, b_hh, h, h_new, c_new):
    """rnn_tanh_cell with relu, as the NumPy step (maximum(a, 0))."""
    _rnn_cell(ax, ah, has_h, b_ih, b_hh, h_new, True)


# -- one step of a few rows from the weights in torch's layout, split over threads --------
# layer.step and freeze() at batch 1: each thread computes a contiguous block of units,
# reading only the weight rows of its units (half the weights each on 2 cores: a 2-layer
# GRU at H = 256, 3 MB, then fits in the cores' own caches: 124 -> 34 us per step). Dot
# products over W's rows, summed in any order (reassoc). The caller picks P, the number of
# blocks (kernels.py: numba's thread count, at most one block per 32 units).

@inline
def _lstm_rows(x, h, c, w_ih, w_hh, b_ih, b_hh, h_new, c_new, p, P):
    """Block p of P of the units: x (N, I), h (N, H), c (N, H); w_ih (4H, I), w_hh (4H, H),
    b_ih, b_hh (4H,) (zeros without bias); writes h_new, c_new (N, H) there."""
    N, H = h.shape
    for n in range(N):
        for j in range(p * H // P, (p + 1) * H // P):
            i, f, g, o, cn, tc = _lstm_unit(
                _rowdot(w_ih, j, x[n]) + _rowdot(w_hh, j, h[n]) + (b_ih[j] + b_hh[j]),
                _rowdot(w_ih, H + j, x[n]) + _rowdot(w_hh, H + j, h[n])
                + (b_ih[H + j] + b_hh[H + j]),
                _rowdot(w_ih, 2 * H + j, x[n]) + _rowdot(w_hh, 2 * H + j, h[n])
                + (b_ih[2 * H + j] + b_hh[2 * H + j]),
                _rowdot(w_ih, 3 * H + j, x[n]) + _rowdot(w_hh, 3 * H + j, h[n])
                + (b_ih[3 * H + j] + b_hh[3 * H + j]), c[n, j])
            c_new[n, j] = cn
            h_new[n, j] = o * tc


@inline
def _gru_rows(x, h, c, w_ih, w_hh, b_ih, b_hh, h_new, c_new, p, P):
    """As _lstm_rows for the GRU (3H rows; c, c_new unused)."""
    N, H = h.shape
    for n in range(N):
        for j in range(p * H // P, (p + 1) * H // P):
            hn = _rowdot(w_hh, 2 * H + j, h[n]) + b_hh[2 * H + j]
            r, z, nn = _gru_unit(
                _rowdot(w_ih, j, x[n]) + _rowdot(w_hh, j, h[n]) + (b_ih[j] + b_hh[j]),
                _rowdot(w_ih, H + j, x[n]) + _rowdot(w_hh, H + j, h[n])
                + (b_ih[H + j] + b_hh[H + j]),
                _rowdot(w_ih, 2 * H + j, x[n]) + b_ih[2 * H + j], hn)
            h_new[n, j] = nn + z * (h[n, j] - nn)


rows = njit(cache=True, error_model="numpy", fastmath={"reassoc", "contract"})
threaded = njit(cache=True, error_model="numpy", fastmath={"reassoc", "contract"},
                parallel=True)


@threaded
def rows_step(x, h, c, w_ih, w_hh, b_ih, b_hh, h_new, c_new, P, lstm):
    """P blocks of units on numba's threads; lstm: which family (_lstm_rows, _gru_rows)."""
    for p in prange(P):
        if lstm:
            _lstm_rows(x, h, c, w_ih, w_hh, b_ih, b_hh, h_new, c_new, p, P)
        else:
            _gru_rows(x, h, c, w_ih, w_hh, b_ih, b_hh, h_new, c_new, p, P)


@rows
def rows_step_1(x, h, c, w_ih, w_hh, b_ih, b_hh, h_new, c_new, P, lstm):
    """rows_step in this thread (a forked child of a process that ran OpenMP, or a numba
    with only its workqueue threading layer, which is not thread-safe)."""
    for p in range(P):
        if lstm:
            _lstm_rows(x, h, c, w_ih, w_hh, b_ih, b_hh, h_new, c_new, p, P)
        else:
            _gru_rows(x, h, c, w_ih, w_hh, b_ih, b_hh, h_new, c_new, p, P)
