"""The eigen trainer: full-batch squared-loss training in the eigenbasis (DESIGN 3.4).

After one decomposition of the weighted Gram matrix (:mod:`._spectral`) a
step costs ``O(N k)`` instead of ``O(N^2 k)``, and the whole path of dual
coefficients comes out of one product at the end.  NumPy and Numba only.
"""

import dataclasses

import numpy as np
from numba import njit

from ._inputs import _check_coef, _check_square, _check_state
from ._jit import CACHE
from ._losses import _check_sample_weight, _check_targets
from ._optimizer import (
    _ADAM_STAR,
    _OPTIMIZER_CODE,
    _SGD,
    OptimizerSettings,
    OptimizerState,
    _adam_star_rates,
    _divergence_error,
)
from ._spectral import EigenDecomposition


@njit(cache=CACHE, error_model="numpy")
def _eigen_step(lam, eta, phi, mu, alpha, beta, zeta, second, scalars, h, mh, out, t,
                optimizer_code, lr, decay, beta_1, beta_2, epsilon, momentum,
                weight_sum):
    """One full-batch squared-loss step in the eigenbasis (DESIGN 3.4), O(N k).

    ``scalars = [gamma, rho]``: the factors of the initial coefficients and of
    the initial momentum on zero-weight rows.  ``h`` (and its momentum ``mh``)
    is the path's spectral filter, ``phi = h * eta`` for a fit from zero: the
    same recursion run on ``eta = 1`` with the realised rates (DESIGN 3.7).
    After the step, ``out[0, c]`` holds the weighted residual sum of squares
    of output ``c``, ``out[1, c]`` the filter's trace ``sum_i h[i, c]`` and
    ``out[2, c]`` the trace of its square, ``sum_i h[i, c]^2``.
    Returns ``(loss, n_bad)``, the loss measured before the step.
    """
    n, k = phi.shape
    loss = 0.0
    for i in range(n):
        for c in range(k):
            r = phi[i, c] - eta[i, c]
            loss += r * r
    loss = 0.5 * loss / weight_sum
    rates = np.full(k, lr)
    if optimizer_code == _ADAM_STAR:
        q = np.zeros(k)
        for i in range(n):
            for c in range(k):
                r = phi[i, c] - eta[i, c]
                q[c] += lam[i] * r * r
        for c in range(k):
            q[c] /= weight_sum * weight_sum
        _adam_star_rates(second, q, t, lr, beta_1, beta_2, epsilon, rates)
        keep, gain = beta_1, 1.0 - beta_1
    elif optimizer_code == _SGD:
        keep, gain = 0.0, 1.0
    else:
        keep, gain = momentum, 1.0
    n_bad = 0
    rho = keep * scalars[1]
    if optimizer_code != _SGD:
        scalars[1] = rho
        for c in range(k):
            beta[c] = decay * beta[c] - rates[c] * rho
    for c in range(k):
        out[0, c] = 0.0
        out[1, c] = 0.0
        out[2, c] = 0.0
    for i in range(n):
        for c in range(k):
            g = (phi[i, c] - eta[i, c]) / weight_sum
            if optimizer_code == _SGD:
                step = g
                velocity = lam[i] * g
            else:
                mu[i, c] = keep * mu[i, c] + gain * g
                step = mu[i, c]
                velocity = lam[i] * mu[i, c] + rho * zeta[i, c]
            phi[i, c] = decay * phi[i, c] - rates[c] * velocity
            alpha[i, c] = decay * alpha[i, c] - rates[c] * step
            if not (np.isfinite(phi[i, c]) and np.isfinite(alpha[i, c])):
                n_bad += 1
            mh[i, c] = keep * mh[i, c] + gain * (h[i, c] - 1.0) / weight_sum
            h[i, c] = decay * h[i, c] - rates[c] * lam[i] * mh[i, c]
            r = phi[i, c] - eta[i, c]
            out[0, c] += r * r
            out[1, c] += h[i, c]
            out[2, c] += h[i, c] * h[i, c]
    scalars[0] *= decay
    return loss, n_bad


class EigenTrainer:
    """Full-batch squared-loss training in the eigenbasis (DESIGN 3.4).

    Follows :class:`DualTrainer` with one batch of every row and
    ``loss="squared"`` (to rounding) at ``O(N k)`` per epoch.  With
    ``W^1/2 K W^1/2 = Q diag(lam) Q^T``, ``S = sum(w)``, the trainer carries
    ``phi = Q^T W^1/2 F``, ``eta = Q^T W^1/2 Y``, ``mu`` with
    ``M = W^1/2 Q mu`` and ``alpha`` with ``A = W^1/2 Q alpha`` (plus the
    decaying resumed part below); with ``r = phi - eta``::

        mu_t    = b1 mu_{t-1} + (1 - b1) r / S               (momentum: mu mu + r / S)
        v_t     = b2 v_{t-1} + (1 - b2) sum_i lam_i r_i^2 / S^2
        phi_t   = c phi_{t-1} - lr D_t lam mu_t
        alpha_t = c alpha_{t-1} - lr D_t mu_t

    A resumed ``coef`` ``A_0`` and the part ``M_0'`` of a resumed momentum on
    zero-weight rows (which the eigenbasis cannot hold) are carried exactly
    as ``A_t = gamma_t A_0 + beta_t M_0' + W^1/2 Q alpha_t`` with scalar
    ``gamma_t = c^t`` and per-output ``beta_t``.

    Parameters
    ----------
    decomposition : EigenDecomposition
        From :func:`eigen_decomposition` on the same ``K`` and weights.
    K : ndarray of shape (N, N) or None
        The Gram matrix, used only to resume from a non-zero ``coef`` (or a
        momentum on zero-weight rows) and by :meth:`train_predictions`.
        ``None`` when training starts from zero: the decomposition is then
        all the trainer needs, and the Gram matrix can be freed.
    Y : ndarray of shape (N, k) or (N,)
    settings : OptimizerSettings
        ``optimizer`` in ``{"adam*", "sgd", "momentum"}``.
    sample_weight : ndarray of shape (N,), default=None
        ``None`` means the weights of ``decomposition``; anything else must
        equal them.
    coef : ndarray of shape (N, k), default=None
        Dual coefficients to resume from.
    state : OptimizerState, default=None
        Dual-form state to resume from.
    record_path : bool, default=False
        Keep the eigen-coefficients of every epoch (``N k`` numbers each) for
        :meth:`coef_path`.

    Attributes
    ----------
    coef : ndarray of shape (N, k)
        Dual coefficients, ``O(N^2 k)`` per access.
    state : OptimizerState
        Dual-form state, ``O(N^2 k)`` per access; resumable by
        :class:`DualTrainer` or another :class:`EigenTrainer`.

    Notes
    -----
    The trainer also runs the recursion on ``eta = 1`` next to the data: that
    is the path's spectral filter ``h_t(lam)`` (``F_t = W^-1/2 Q diag(h_t)
    Q^T W^1/2 Y`` for a fit from zero, given the realised step sizes), whose
    trace gives the generalised cross-validation estimate :meth:`gcv` of
    DESIGN 3.7 after every epoch, for ``O(N k)`` more.  With
    ``record_path=True``, :meth:`coef_path` returns the dual coefficients after
    every epoch from one matrix product.
    """

    def __init__(self, decomposition, K, Y, settings, sample_weight=None, coef=None,
                 state=None, *, record_path=False):
        if not isinstance(decomposition, EigenDecomposition):
            raise TypeError("decomposition must come from eigen_decomposition.")
        if not isinstance(settings, OptimizerSettings):
            raise TypeError("settings must be an OptimizerSettings.")
        if settings.optimizer not in ("adam*", "sgd", "momentum"):
            raise ValueError(
                "The eigen solver runs adam*, sgd and momentum, not "
                f"{settings.optimizer!r}."
            )
        Q = decomposition.eigenvectors
        n = Q.shape[0]
        if K is not None:
            K = _check_square(K)
            if K.shape[0] != n:
                raise ValueError(
                    f"K has {K.shape[0]} rows but the decomposition {n}."
                )
        dtype = Q.dtype
        if sample_weight is not None:
            weight = _check_sample_weight(sample_weight, n, dtype)
            if not np.array_equal(weight, decomposition.sample_weight):
                raise ValueError(
                    "sample_weight differs from the weights of the decomposition; "
                    "recompute eigen_decomposition(K, sample_weight)."
                )
        self._K = K
        self._settings = settings
        self._decomposition = decomposition
        self._Y = _check_targets(Y, n, dtype, "squared")
        k = self._Y.shape[1]
        sqrt_w = decomposition.sqrt_weight
        positive = decomposition.sample_weight > 0

        A0 = _check_coef(coef, n, k, dtype)
        state = _check_state(state, n, k, settings.optimizer, dtype)
        if decomposition.krylov:
            self._check_krylov_start(A0, state, sqrt_w)
        self._A0 = A0 if np.any(A0) else None
        if self._A0 is not None:
            self._require_K("resume from non-zero coefficients")
        self._second = state.second_moment
        self._t = state.t

        self._eta = Q.T @ (sqrt_w[:, None] * self._Y)
        self._phi = (
            Q.T @ (sqrt_w[:, None] * (K @ A0)) if self._A0 is not None
            else np.zeros_like(self._eta)
        )
        self._alpha = np.zeros_like(self._eta)
        self._beta = np.zeros(k)
        self._scalars = np.array([1.0, 1.0])  # gamma, rho
        self._mu = np.zeros_like(self._eta)
        self._zeta = np.zeros_like(self._eta)
        self._M0 = state.momentum_buffer  # kept as is by sgd
        self._M0_perp = None
        M0 = state.momentum_buffer
        if settings.optimizer != "sgd" and np.any(M0):
            on_positive = np.where(positive[:, None], M0, 0)
            scaled = np.divide(on_positive, sqrt_w[:, None], out=np.zeros_like(M0),
                               where=positive[:, None])
            self._mu = Q.T @ scaled
            perp = np.where(positive[:, None], 0, M0)
            if np.any(perp):
                self._require_K("resume a momentum on zero-weight rows")
                self._M0_perp = perp
                self._zeta = Q.T @ (sqrt_w[:, None] * (K @ perp))
        self._filter = np.zeros_like(self._eta)
        self._filter_momentum = np.zeros_like(self._eta)
        # Residual sums of squares, traces of the filter and of its square.
        self._fit_summary = np.zeros((3, k))
        self._record_path = record_path
        self._path = []
        self._n_epochs = 0

    def _check_krylov_start(self, A0, state, sqrt_w):
        """A Krylov restriction holds from zero, for the targets it was built on."""
        if np.any(A0) or np.any(state.momentum_buffer) or state.t:
            raise ValueError(
                "A Krylov decomposition trains from zero coefficients only; "
                "resume with eigen_decomposition(K, sample_weight) instead."
            )
        Q = self._decomposition.eigenvectors
        target = sqrt_w[:, None] * self._Y
        outside = target - Q @ (Q.T @ target)
        scale = np.linalg.norm(target)
        if np.linalg.norm(outside) > 1e3 * np.finfo(Q.dtype).eps * max(scale, 1e-300):
            raise ValueError(
                "Y is not the target the Krylov decomposition was built for."
            )

    def _require_K(self, purpose):
        if self._K is None:
            raise ValueError(f"EigenTrainer needs the Gram matrix K to {purpose}.")

    @property
    def coef(self):
        """Dual coefficients ``A`` (N, k), one ``O(N^2 k)`` product."""
        gamma = self._scalars[0]
        return self._dual(self._alpha, gamma, self._beta)

    def _dual(self, alpha, gamma, beta):
        sqrt_w = self._decomposition.sqrt_weight
        coef = sqrt_w[:, None] * (self._decomposition.eigenvectors @ alpha)
        if self._A0 is not None:
            coef += gamma * self._A0
        if self._M0_perp is not None:
            coef += beta[None, :] * self._M0_perp
        return coef

    @property
    def state(self):
        """Dual-form :class:`OptimizerState`, one ``O(N^2 k)`` product."""
        if self._settings.optimizer == "sgd":
            moment = self._M0.copy()
        else:
            sqrt_w = self._decomposition.sqrt_weight
            moment = sqrt_w[:, None] * (self._decomposition.eigenvectors @ self._mu)
            if self._M0_perp is not None:
                moment += self._scalars[1] * self._M0_perp
        return OptimizerState(moment, self._second.copy(), self._t)

    def train_predictions(self):
        """Current outputs ``F = K A`` on the training rows, shape (N, k)."""
        self._require_K("compute the training outputs")
        return self._K @ self.coef

    def run_epoch(self, batches=None):
        """One full-batch step (``batches`` is ignored).

        Returns
        -------
        loss : float
            Sample-weighted mean squared loss ``0.5 ||f - y||^2`` before the step.

        Raises
        ------
        FloatingPointError
            As soon as the loss or a coefficient becomes NaN or infinite.
        """
        s = self._settings
        limit = self._decomposition.max_epochs
        if limit is not None and self._n_epochs >= limit:
            raise RuntimeError(
                f"This Krylov decomposition is exact for {limit} epochs; "
                f"build it for more (krylov_decomposition(..., n_epochs=...))."
            )
        t = self._t + 1
        loss, n_bad = _eigen_step(
            self._decomposition.eigenvalues, self._eta, self._phi, self._mu,
            self._alpha, self._beta, self._zeta, self._second, self._scalars,
            self._filter, self._filter_momentum, self._fit_summary, t,
            _OPTIMIZER_CODE[s.optimizer], s.rate(t), s.decay(t), s.beta_1, s.beta_2,
            s.epsilon, s.momentum, self._decomposition.weight_sum,
        )
        self._t = t
        self._n_epochs += 1
        if n_bad > 0 or not np.isfinite(loss):
            raise _divergence_error(self._t, s.learning_rate)
        if self._record_path:
            self._path.append(self.snapshot())
        return float(loss)

    def gcv(self, gamma=1.0):
        """Generalised cross-validation estimate of the current model (DESIGN 3.7).

        ``sum_c (RSS_c / S) / (1 - tr_c / S)^2 * (gamma + (1 - gamma) m_c)``
        with ``RSS_c`` the weighted residual sum of squares of output ``c``,
        ``tr_c`` the trace of the path's spectral filter ``S_t``,
        ``m_c = tr(S_t^2) / S`` and ``S = sum(w)`` (sample weights count as
        repetitions of their rows).  ``gamma=1`` is GCV; ``gamma < 1`` is
        Lukas's robust GCV (RGCV, Lukas 2006), which adds a penalty on the
        filter's variance and so guards against the undersmoothing that GCV
        picks now and then on noisy data.  It treats the realised step sizes
        as given: exact for SGD and momentum, an approximation for ADAM*.
        ``inf`` where the filter's trace reaches ``S``.

        Parameters
        ----------
        gamma : float in (0, 1], default=1.0
            RGCV's robustness parameter (1: plain GCV).

        Raises
        ------
        ValueError
            For a Krylov restriction, whose spectrum is not whole.
        """
        if self._decomposition.krylov:
            raise ValueError(
                "GCV needs the whole spectrum; a Krylov restriction has only "
                "its Ritz values."
            )
        weight_sum = self._decomposition.weight_sum
        rss, trace, trace_of_square = self._fit_summary
        denominator = 1.0 - trace / weight_sum
        if np.any(denominator <= 0):
            return np.inf
        robustness = gamma + (1.0 - gamma) * trace_of_square / weight_sum
        # A vanishing denominator gives inf, as above.
        with np.errstate(over="ignore", invalid="ignore"):
            terms = rss / weight_sum / denominator**2 * robustness
        # An output fitted exactly (a constant target, centred to zero) adds
        # nothing, however far ADAM*'s steps on its zero gradient have grown
        # its filter.
        terms[rss == 0] = 0.0
        return float(np.sum(terms))

    def curvature(self):
        """``lambda_max(W^1/2 K W^1/2) / sum(w)``; SGD is stable below 2 / it."""
        eigenvalues = self._decomposition.eigenvalues
        top = float(eigenvalues.max()) if eigenvalues.size else 0.0
        return top / self._decomposition.weight_sum

    def snapshot(self):
        """The current coefficients in the trainer's own form, ``O(N k)``."""
        return self._alpha.copy(), float(self._scalars[0]), self._beta.copy()

    def coef_of(self, snapshot):
        """Dual coefficients of a :meth:`snapshot`, one ``O(N^2 k)`` product."""
        return self._dual(*snapshot)

    @property
    def learning_rate(self):
        """The base step size the trainer runs with."""
        return self._settings.learning_rate

    def set_learning_rate(self, learning_rate):
        """Continue with another base step size (the ``"adaptive"`` schedule)."""
        self._settings = dataclasses.replace(self._settings,
                                             learning_rate=learning_rate)

    def output_map(self, operator):
        """A function returning ``operator @ coef`` for the current ``coef``.

        One ``O(m N^2)`` product up front maps ``operator`` into the
        eigenbasis; each call then costs ``O(m N k)`` instead of the
        ``O(N^2 k)`` of reading :attr:`coef` (``m`` = rows of ``operator``,
        e.g. the validation rows' kernel for early stopping).

        Parameters
        ----------
        operator : ndarray of shape (m, N)

        Returns
        -------
        outputs : callable
            ``outputs()`` is an (m, k) array.
        """
        sqrt_w = self._decomposition.sqrt_weight
        basis = (operator * sqrt_w[None, :]) @ self._decomposition.eigenvectors
        from_A0 = None if self._A0 is None else operator @ self._A0
        from_perp = None if self._M0_perp is None else operator @ self._M0_perp

        def outputs():
            out = basis @ self._alpha
            if from_A0 is not None:
                out += self._scalars[0] * from_A0
            if from_perp is not None:
                out += self._beta[None, :] * from_perp
            return out

        return outputs

    def coef_path(self):
        """Dual coefficients after each epoch run by this trainer (``record_path``).

        The recorded eigen-coefficients (``N k`` numbers per epoch) are
        mapped to dual form with a single matrix product, ``O(N^2 k T)`` for
        ``T`` epochs at BLAS-3 speed.

        Returns
        -------
        path : ndarray of shape (T, N, k)
            ``path[e]`` equals :attr:`coef` after epoch ``e + 1``.
        """
        if not self._record_path:
            raise ValueError("This EigenTrainer was made with record_path=False.")
        Q = self._decomposition.eigenvectors
        n, (r, k) = Q.shape[0], self._eta.shape
        if not self._path:
            return np.zeros((0, n, k), dtype=Q.dtype)
        alphas = np.stack([alpha for alpha, _, _ in self._path], axis=1)  # (r, T, k)
        T = len(self._path)
        path = (Q @ alphas.reshape(r, T * k)).reshape(n, T, k)
        path *= self._decomposition.sqrt_weight[:, None, None]
        path = np.ascontiguousarray(path.transpose(1, 0, 2))
        for e, (_, gamma, beta) in enumerate(self._path):
            if self._A0 is not None:
                path[e] += gamma * self._A0
            if self._M0_perp is not None:
                path[e] += beta[None, :] * self._M0_perp
        return path
