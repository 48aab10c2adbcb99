"""The user's layout of one layer call and the conversions to and from the time-major
batched arrays of the sequence driver."""
import numpy as np


class Layout:
    def __init__(self, batched, batch_first, step):
        self.batched, self.batch_first, self.step = batched, batch_first, step

    def seq_in(self, a):
        """input / output / dropout mask shaped: user -> (L, N, F)."""
        if self.step:
            return a[None] if self.batched else a[None, None]
        if not self.batched:
            return a[:, None]
        return a.transpose(1, 0, 2) if self.batch_first else a

    def seq_out(self, a):
        if self.step:
            return a[0] if self.batched else a[0, 0]
        if not self.batched:
            return a[:, 0]
        return np.ascontiguousarray(a.transpose(1, 0, 2)) if self.batch_first else a

    def state_in(self, a):
        """h0 / h_n shaped: user -> (num_layers * D, N, H)."""
        return a if self.batched else a[:, None]

    def state_out(self, a):
        return a if self.batched else a[:, 0]

    def seq_shape(self, T, N, F):
        """The user-layout shape of a (T, N, F) time-major array."""
        if self.step:
            return (N, F) if self.batched else (F,)
        if not self.batched:
            return (T, F)
        return (N, T, F) if self.batch_first else (T, N, F)

    def state_shape(self, LD, N, F):
        return (LD, N, F) if self.batched else (LD, F)
