"""PlasticityMonitorCallback: neuron-level health of every network in TensorBoard."""

from __future__ import annotations

import math
from collections.abc import Sequence

from sb3_plasticity.capture import Capture
from sb3_plasticity.methods.base import PlasticityCallback, check_nonnegative, check_positive_int
from sb3_plasticity.metrics import layer_metrics, pool, weight_norm

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
    weight), ``grad_norm`` (L2 of the parameter gradients of the recorded update, after SB3's clipping for
    PPO/A2C; online networks), ``activation_norm`` (mean |h|) and ``effective_rank`` (of the last hidden
    layer's features; per layer for every Linear layer of the online networks and the last hidden layers of
    target networks). These keys are excluded from SB3's stdout table.

    :param log_freq: env steps between measurements (default 1000).
    :param tau: threshold of the tau-dormant ratio (default 0.1, ReDo's MLP value; GraMa App. A uses 0.02
        for BRO-net).
    :param grama_tau: threshold of the GraMa inactive ratio (default 0.0, the GraMa paper's MLP SAC value;
        0.01 for BRO-net, GraMa Sec. 5.1).
    :param networks: networks to monitor (default: all, target networks included).
    :param per_layer: also log every layer.
    :param rank_samples: samples used for the effective rank (SVD cost); None uses the whole batch.
    :param verbose: 0 or 1.
    """

    def __init__(
        self,
        log_freq: int = 1000,
        tau: float = 0.1,
        grama_tau: float = 0.0,
        networks: str | Sequence[str] | None = None,
        per_layer: bool = True,
        rank_samples: int | None = 256,
        verbose: int = 0,
    ) -> None:
        super().__init__(networks, verbose)
        self.log_freq = check_positive_int("log_freq", log_freq)
        self.tau = check_nonnegative("tau", tau)
        self.grama_tau = check_nonnegative("grama_tau", grama_tau)
        if rank_samples is not None:
            check_positive_int("rank_samples", rank_samples)
        self.rank_samples = rank_samples
        self.per_layer = bool(per_layer)
        self.capture: Capture | None = None
        self._next_arm = 0
        self._logged: set[str] = set()
        self.n_logged = 0  # measurements written (one per network and event)

    def _setup(self) -> None:
        if self.capture is not None:
            self.capture.disarm()
        self.capture = Capture(self.neurons, self.neurons.select(self.networks), gradients=True)
        self._next_arm = self.model.num_timesteps

    def _on_step(self) -> bool:
        self._flush()
        if not self.capture.armed and self.num_timesteps >= self._next_arm:
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
        for network in ready:
            self._log_network(network)
            self._logged.add(network)
        self.dump()
        if all(n in self._logged for n in self.network_names):
            capture.disarm()
            # The next measurement is due at the first multiple of log_freq after this one was taken.
            self._next_arm = (self.num_timesteps // self.log_freq + 1) * self.log_freq

    def _log_network(self, network: str) -> None:
        capture = self.capture
        groups = [g for g in capture.groups if g.network == network]
        layers = []
        grads = capture.network_gradients.get(network)
        for g in groups:
            rec = capture.records[g]
            # the SVD is most of the monitor's cost: target networks get the rank of their last hidden layer only
            rank = not g.is_target or g.is_last_hidden
            m = layer_metrics(
                g.producer, rec.activation, rec.grad, g.alive(), self.tau, self.grama_tau, self.rank_samples, rank
            )
            layers.append(m)
            if self.per_layer:
                if grads is not None:
                    m.values["grad_norm"] = grads.layer_norms.get(g.name, 0.0)
                for metric, value in m.values.items():
                    self.record(f"{network}/{g.name}/{metric}", value)
        values = pool(layers, [g.is_last_hidden for g in groups])
        values["weight_norm"] = weight_norm(self.neurons.network_parameters(network))
        if grads is not None:
            values["grad_norm"] = math.sqrt(grads.total_sq)
        for metric, value in values.items():
            self.record(f"{network}/{metric}", value)
        self.n_logged += 1
