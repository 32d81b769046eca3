"""A trained engagement policy as a small numpy forward pass: no RLlib, no torch at inference.

The PPO job (:mod:`pipelines.train_policy`) trains an action-masking RLModule on
observations scaled by an :class:`ObsNormalizer`; :meth:`NumpyPolicy.from_rl_module` copies
the module's policy network (encoder then ``pi`` head: ``Linear`` layers and their
activations) into arrays, and :meth:`NumpyPolicy.save` writes them with the normaliser, the
observation names and the action count to one ``.npz``. Loaded back, the policy is called
like every other baseline, ``policy(obs, mask, rng) -> actions`` on raw ``box``
observations, and returns the allowed action with the highest logit, which is the action the
RLModule's greedy (inference) forward pass picks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ddso.errors import DataFileError, UserError
from rl_env.observation import OBS_NAMES, observation_space

_ACTIVATIONS = {
    "linear": lambda x: x,
    "tanh": np.tanh,
    "relu": lambda x: np.maximum(x, 0.0),
}
_FORMAT = "ddso.numpy_policy/1"


@dataclass(frozen=True)
class ObsNormalizer:
    """Fixed observation scaling: ``log1p`` on the unbounded columns, then standardise and clip.

    Learned once from sample observations (:meth:`from_observations`) and stored with the
    policy, so training, serving and evaluation scale observations identically.
    """

    log: np.ndarray
    """Per column: take ``log1p`` first (counts, money, days: heavy right tails)."""
    mean: np.ndarray
    std: np.ndarray
    clip: float = 10.0

    @classmethod
    def from_observations(cls, obs: np.ndarray, clip: float = 10.0) -> ObsNormalizer:
        """Scaling fitted to ``obs`` (N, features); a constant column keeps std 1."""
        obs = np.asarray(obs, dtype=np.float64)
        log = observation_space().high > 4.0
        if obs.ndim != 2 or obs.shape[1] != len(log):
            raise UserError(f"ObsNormalizer: observations of shape {obs.shape}; expected "
                            f"(N, {len(log)}) box observations (rl_env.observation.OBS_NAMES)")
        x = np.where(log, np.log1p(np.maximum(obs, 0.0)), obs)
        std = x.std(0)
        return cls(log=log, mean=x.mean(0), std=np.where(std > 1e-6, std, 1.0), clip=clip)

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        """(N, features) raw observations -> float32 scaled ones."""
        obs = np.asarray(obs, dtype=np.float64)
        x = np.where(self.log, np.log1p(np.maximum(obs, 0.0)), obs)
        return np.clip((x - self.mean) / self.std, -self.clip, self.clip).astype(np.float32)


class NumpyPolicy:
    """A feed-forward policy network in numpy; greedy over the allowed actions.

    ``layers`` are ``(weight (in, out), bias (out,), activation)`` applied in order to the
    scaled observation; the last layer's outputs are the action logits.
    """

    def __init__(self, layers: list[tuple[np.ndarray, np.ndarray, str]],
                 normalizer: ObsNormalizer, obs_names: tuple[str, ...] = OBS_NAMES,
                 metadata: dict[str, Any] | None = None, sample: bool = False):
        for i, (w, b, act) in enumerate(layers):
            if act not in _ACTIVATIONS or w.ndim != 2 or b.shape != (w.shape[1],):
                raise UserError(f"NumpyPolicy layer {i}: weight {w.shape}, bias {b.shape}, "
                                f"activation {act!r}; need (in, out), (out,) and one of "
                                f"{sorted(_ACTIVATIONS)}")
        if layers[0][0].shape[0] != len(obs_names):
            raise UserError(f"NumpyPolicy: first layer takes {layers[0][0].shape[0]} inputs, "
                            f"but there are {len(obs_names)} observation names")
        self.layers = layers
        self.normalizer = normalizer
        self.obs_names = tuple(obs_names)
        self.metadata = dict(metadata or {})
        self.sample = sample

    @property
    def n_actions(self) -> int:
        return int(self.layers[-1][0].shape[1])

    def logits(self, obs: np.ndarray) -> np.ndarray:
        """(N, actions) unmasked logits of raw (N, features) observations."""
        x = self.normalizer(obs).astype(np.float64)
        for w, b, act in self.layers:
            x = _ACTIVATIONS[act](x @ w + b)
        return x

    def probabilities(self, obs: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """(N, actions) the policy's action distribution: softmax of the masked logits."""
        logits = np.where(mask, self.logits(obs), -np.inf)
        p = np.exp(logits - logits.max(1, keepdims=True))
        return p / p.sum(1, keepdims=True)

    def __call__(self, obs: np.ndarray, mask: np.ndarray, rng: np.random.Generator
                 ) -> np.ndarray:
        """The allowed action of highest logit, or with ``sample`` one drawn from
        :meth:`probabilities` (the stochastic policy PPO optimised) with ``rng``."""
        if self.sample:
            cdf = self.probabilities(obs, mask).cumsum(1)
            u = rng.random((len(cdf), 1)) * cdf[:, -1:]
            return np.minimum((cdf <= u).sum(1), cdf.shape[1] - 1)
        return np.where(mask, self.logits(obs), -np.inf).argmax(1)

    def sampling(self, sample: bool = True) -> NumpyPolicy:
        """The same network, choosing greedily (``sample=False``) or by sampling."""
        return NumpyPolicy(self.layers, self.normalizer, self.obs_names, self.metadata, sample)

    def save(self, path: str | Path) -> Path:
        """Write the policy to ``path`` (a ``.npz``: weights, scaling, names, metadata)."""
        path = Path(path)
        arrays: dict[str, np.ndarray] = {
            "norm_log": self.normalizer.log, "norm_mean": self.normalizer.mean,
            "norm_std": self.normalizer.std,
        }
        for i, (w, b, _) in enumerate(self.layers):
            arrays[f"w{i}"], arrays[f"b{i}"] = w, b
        header = {"format": _FORMAT, "activations": [a for _, _, a in self.layers],
                  "obs_names": list(self.obs_names), "n_actions": self.n_actions,
                  "clip": self.normalizer.clip, "metadata": self.metadata}
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            np.savez(f, header=np.array(json.dumps(header)), **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path) -> NumpyPolicy:
        """Read a policy written by :meth:`save`; a foreign or damaged file names itself."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                header = json.loads(str(z["header"]))
                arrays = {k: z[k] for k in z.files if k != "header"}
        except FileNotFoundError:
            raise DataFileError(f"{path}: no such policy file") from None
        except (OSError, ValueError, KeyError) as e:
            raise DataFileError(f"{path}: not a policy written by NumpyPolicy.save ({e})") from None
        if header.get("format") != _FORMAT:
            raise DataFileError(f"{path}: format {header.get('format')!r}, expected {_FORMAT!r}")
        obs_names = tuple(header["obs_names"])
        if obs_names != OBS_NAMES:
            raise DataFileError(f"{path}: trained on observation columns that differ from "
                                "rl_env.observation.OBS_NAMES; retrain the policy")
        layers = [(arrays[f"w{i}"], arrays[f"b{i}"], act)
                  for i, act in enumerate(header["activations"])]
        normalizer = ObsNormalizer(arrays["norm_log"], arrays["norm_mean"], arrays["norm_std"],
                                   float(header["clip"]))
        return cls(layers, normalizer, obs_names, header.get("metadata"))

    @classmethod
    def untrained(cls, n_actions: int, hidden: tuple[int, ...] = (64, 64), seed: int = 0
                  ) -> NumpyPolicy:
        """A network of the training job's shape (tanh hidden layers, linear head) with random
        weights: for measuring the serving cost of a policy, and for tests."""
        rng = np.random.default_rng(seed)
        sizes = [len(OBS_NAMES), *hidden, n_actions]
        layers = [(rng.normal(0.0, 1.0 / np.sqrt(a), (a, b)), rng.normal(0.0, 0.1, b),
                   "tanh" if i < len(hidden) else "linear")
                  for i, (a, b) in enumerate(zip(sizes, sizes[1:], strict=False))]
        high = observation_space().high
        scale = rng.uniform(0.0, np.minimum(high, 10.0), (64, len(OBS_NAMES)))
        return cls(layers, ObsNormalizer.from_observations(scale), OBS_NAMES)

    @classmethod
    def from_rl_module(cls, module: Any, normalizer: ObsNormalizer,
                       metadata: dict[str, Any] | None = None) -> NumpyPolicy:
        """Copy the policy path of an RLlib PPO torch module (MLP encoder, then the pi head)."""
        encoder = module.encoder
        actor = getattr(encoder, "actor_encoder", None) or encoder.encoder
        layers = _mlp_layers(actor.net.mlp) + _mlp_layers(module.pi.net.mlp)
        return cls(layers, normalizer, OBS_NAMES, metadata)


def _mlp_layers(sequential: Any) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """``Linear`` layers of a torch ``Sequential``, each with the activation that follows it."""
    import torch

    names = {torch.nn.Tanh: "tanh", torch.nn.ReLU: "relu", torch.nn.Identity: "linear"}
    layers: list[tuple[np.ndarray, np.ndarray, str]] = []
    for part in sequential:
        if isinstance(part, torch.nn.Linear):
            layers.append((part.weight.detach().double().numpy().T.copy(),
                           part.bias.detach().double().numpy().copy(), "linear"))
        elif type(part) in names and layers and layers[-1][2] == "linear":
            w, b, _ = layers[-1]
            layers[-1] = (w, b, names[type(part)])
        else:
            raise UserError(f"cannot export layer {part!r}: only Linear layers followed by "
                            f"{', '.join(n.__name__ for n in names)} are supported")
    return layers
