"""PlasticityMonitorCallback: neuron-level health of every network in TensorBoard."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch as th

from sb3_plasticity.capture import Capture
from sb3_plasticity.checks import check_nonnegative, check_positive_int
from sb3_plasticity.methods.base import PlasticityCallback
from sb3_plasticity.metrics import gradient_correlation, layer_metrics, mean_abs_offdiagonal, pool, weight_l1, weight_norm
from sb3_plasticity.schedule import EveryN

__all__ = ["PlasticityMonitorCallback"]


class PlasticityMonitorCallback(PlasticityCallback):
    """Logs plasticity metrics of every network of a TD3, DDPG, SAC, PPO or A2C model.

    Every ``log_freq`` env steps the callback arms a :class:`~sb3_plasticity.capture.Capture` for the
    algorithm's next training pass (the critic-loss pass for critics, the actor-loss pass for actors, the
    first minibatch for PPO/A2C; see :mod:`sb3_plasticity.capture`), computes the metrics of
    :mod:`sb3_plasticity.metrics` on that batch and writes them to the logger at once, whatever SB3's
    ``log_interval``. Nothing runs between events. Before the first training pass (``learning_starts``,
    the first rollout) there is nothing to log.

    Tags (Python floats): ``plasticity/<network>/<metric>`` and, with ``per_layer``,
    ``plasticity/<network>/<layer>/<metric>``, with metrics ``dormant_ratio`` (tau-dormant, ReDo),
    ``active_ratio`` (NE Eq. 1), ``active_ratio_per_sample``, ``grama_inactive_ratio`` (GraMa Eq. 2;
    online networks), ``weight_norm`` (L2 of all the network's parameters; per layer, of the producer
    weight), ``weight_l1`` (the average L1 norm, mean |w|, of the same tensors; P3O Fig. 5), ``grad_norm`` (L2 of
    the parameter gradients of the recorded update, after SB3's clipping for PPO/A2C; online networks),
    ``activation_norm`` (mean |h|) and ``effective_rank`` (of the last hidden layer's features; per layer for every
    Linear layer of the online networks and the last hidden layers of target networks). These keys are excluded
    from SB3's stdout table.

    A network whose recorded activations or gradients hold NaN or inf (a diverging critic) gets no value at that
    measurement: a ``RuntimeWarning`` (once per ``learn()``) and ``plasticity/monitor/skipped_events`` (the count of
    skipped network measurements) are logged instead.

    With ``grad_correlation`` (off by default) the online networks also get ``grad_correlation``: the mean
    off-diagonal ``|C_ij|`` of the correlation matrix of the per-sample loss gradients ``dL/dz`` at the neurons
    (P3O App. A.4.1, Fig. 28-30; :func:`~sb3_plasticity.metrics.gradient_correlation`) on the recorded batch, per
    layer and for the network (all its hidden neurons together). ``"neurons"`` (or True): between neurons, Pearson
    over the batch; ``"samples"``: between samples, cosine over the network's neurons. At the first measurement at
    or after each step of ``grad_correlation_steps`` (those behind ``num_timesteps`` when ``learn()`` starts are
    dropped: a continued run saved them before) the network's matrix is saved as
    ``<grad_correlation_dir>/<network>_<over>_step<num_timesteps>.npy`` (float32; a neuron with a constant gradient
    has a row and column of zeros), by default under the logger's folder (the TensorBoard run folder with
    rl-zoo's ``-tb``), else ``./grad_correlation``. It costs a ``(neurons x neurons)`` product per network from
    gradients the capture records anyway: no per-sample backward pass.

    :param log_freq: env steps between measurements (default 1000).
    :param tau: threshold of the tau-dormant ratio (default 0.1, ReDo's MLP value; GraMa App. A uses 0.02
        for BRO-net).
    :param grama_tau: threshold of the GraMa inactive ratio (default 0.0, the GraMa paper's MLP SAC value;
        0.01 for BRO-net, GraMa Sec. 5.1).
    :param networks: networks to monitor (default: all, target networks included).
    :param per_layer: also log every layer.
    :param rank_samples: samples used for the effective rank (SVD cost); None uses the whole batch.
    :param verbose: 0 or 1.
    :param grad_correlation: None/False (default: off), True or ``"neurons"``, or ``"samples"``.
    :param grad_correlation_steps: env steps at which to save the matrices (the first measurement at or after
        each); default none.
    :param grad_correlation_dir: folder of the saved matrices (default: see above).
    """

    method = "monitor"

    def __init__(
        self,
        log_freq: int = 1000,
        tau: float = 0.1,
        grama_tau: float = 0.0,
        networks: str | Sequence[str] | None = None,
        per_layer: bool = True,
        rank_samples: int | None = 256,
        verbose: int = 0,
        grad_correlation: bool | str | None = None,
        grad_correlation_steps: Sequence[int] = (),
        grad_correlation_dir: str | None = None,
    ) -> None:
        super().__init__(networks, verbose)
        if grad_correlation is True:
            grad_correlation = "neurons"
        if grad_correlation is False:
            grad_correlation = None
        if grad_correlation not in (None, "neurons", "samples"):
            raise ValueError(f"grad_correlation must be None, True, 'neurons' or 'samples', got {grad_correlation!r}")
        self.grad_correlation: str | None = grad_correlation
        steps = [
            check_positive_int(
                "grad_correlation_steps", int(v) if isinstance(v, float) and v.is_integer() else v, unit="env steps"
            )
            for v in grad_correlation_steps
        ]
        if steps and grad_correlation is None:
            raise ValueError("grad_correlation_steps needs grad_correlation ('neurons' or 'samples')")
        self.grad_correlation_steps = sorted(steps)
        self.grad_correlation_dir = grad_correlation_dir
        self.saved: list[Path] = []  # the .npy files written
        self.log_schedule = EveryN(log_freq, name="log_freq")
        self.log_freq = self.log_schedule.freq
        self.tau = check_nonnegative("tau", tau)
        self.grama_tau = check_nonnegative("grama_tau", grama_tau)
        if rank_samples is not None:
            check_positive_int("rank_samples", rank_samples)
        self.rank_samples = rank_samples
        self.per_layer = bool(per_layer)
        self.capture: Capture | None = None
        self._logged: set[str] = set()
        self.n_logged = 0  # measurements written (one per network and event)

    def _setup(self) -> None:
        if self.capture is not None:
            self.capture.disarm()
        self.capture = Capture(self.neurons, self.neurons.select(self.networks), gradients=True)
        self.log_schedule.start(self.model.num_timesteps, now=True)  # the first measurement: the next training pass
        # a continued run (rl-zoo -i, the experiments runner's resume) saved the matrices of the steps behind it
        self.grad_correlation_steps = [s for s in self.grad_correlation_steps if s > self.model.num_timesteps]

    def _on_step(self) -> bool:
        self._flush()
        if not self.capture.armed and self.log_schedule.is_due(self.num_timesteps):
            self.capture.arm()
            self._logged = set()
        return True

    def _on_rollout_start(self) -> None:
        # Runs right after train(): log at the step the measurement was taken.
        self._flush()

    def _finish(self) -> None:
        self._flush()
        if self.capture is not None:
            self.capture.disarm()

    def _flush(self) -> None:
        capture = self.capture
        if capture is None or not capture.armed:
            return
        ready = [n for n in self.network_names if n not in self._logged and capture.network_complete(n)]
        if not ready:
            return
        save = bool(self.grad_correlation_steps) and self.num_timesteps >= self.grad_correlation_steps[0]
        for network in ready:
            self._log_network(network, save)
            self._logged.add(network)
        self.dump()
        if all(n in self._logged for n in self.network_names):
            capture.disarm()
            while self.grad_correlation_steps and self.num_timesteps >= self.grad_correlation_steps[0]:
                self.grad_correlation_steps.pop(0)
            # The next measurement is due at the first multiple of log_freq after this one was taken.
            self.log_schedule.advance(self.num_timesteps)

    def _log_network(self, network: str, save: bool = False) -> None:
        capture = self.capture
        groups = [g for g in capture.groups if g.network == network]
        if not self.check_finite(capture, groups, dump=False):
            return  # a diverging network: this measurement is skipped (counted in plasticity/monitor/skipped_events)
        layers = []
        grads = capture.network_gradients.get(network)
        correlations = self._grad_correlations(groups, network, save) if self.grad_correlation else {}
        for g in groups:
            rec = capture.records[g]
            # the SVD is most of the monitor's cost: target networks get the rank of their last hidden layer only
            rank = not g.is_target or g.is_last_hidden
            m = layer_metrics(
                g.producer, rec.activation, rec.grad, g.alive(), self.tau, self.grama_tau, self.rank_samples, rank
            )
            layers.append(m)
            if g.name in correlations:
                m.values["grad_correlation"] = correlations[g.name]
            if self.per_layer:
                if grads is not None:
                    m.values["grad_norm"] = grads.layer_norms.get(g.name, 0.0)
                for metric, value in m.values.items():
                    self.record(f"{network}/{g.name}/{metric}", value)
        values = pool(layers, [g.is_last_hidden for g in groups])
        params = list(self.neurons.network_parameters(network))
        values["weight_norm"] = weight_norm(params)
        values["weight_l1"] = weight_l1(params)
        if grads is not None:
            values["grad_norm"] = math.sqrt(grads.total_sq)
        if "" in correlations:
            values["grad_correlation"] = correlations[""]
        for metric, value in values.items():
            self.record(f"{network}/{metric}", value)
        self.n_logged += 1

    # -- gradient correlation (P3O App. A.4.1) -------------------------------------------------------------
    def _grad_correlations(self, groups, network: str, save: bool) -> dict[str, float]:
        """Mean off-diagonal ``|C|`` per layer (by group name) and for the network (key ``""``); saves the network's
        matrix when ``save``. Target networks and groups without a recorded gradient are skipped."""
        over = self.grad_correlation
        out: dict[str, float] = {}
        per_sample: list[th.Tensor] = []
        for g in groups:
            rec = self.capture.records.get(g)
            if g.is_target or rec is None or rec.grad is None:
                continue
            grad = rec.grad
            if g.alive() is not None:
                grad = grad[:, g.alive().to(grad.device)]
            corr, valid = gradient_correlation(grad, over)
            out[g.name] = mean_abs_offdiagonal(corr, valid)
            per_sample.append(grad.reshape(grad.shape[0], grad.shape[1], -1).sum(dim=2))
        if not per_sample or len({t.shape[0] for t in per_sample}) != 1:
            return out
        corr, valid = gradient_correlation(th.cat(per_sample, dim=1), over)
        out[""] = mean_abs_offdiagonal(corr, valid)
        if save:
            folder = Path(self.grad_correlation_dir or os.path.join(self.logger.get_dir() or ".", "grad_correlation"))
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{network}_{over}_step{self.num_timesteps}.npy"
            np.save(path, corr.cpu().numpy().astype(np.float32))
            self.saved.append(path)
        return out
