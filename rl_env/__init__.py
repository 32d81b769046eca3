"""Gymnasium environments of ddso: the simulated customer journey, ``ddso/CustomerJourney-v0``.

A customer, one of the generator's (or a real profile), goes lead -> contacted -> qualified
-> enrolled -> active -> graduated, or drops out, or churns; each day the agent decides whom
to contact how, with what. Importing this package registers the id and nothing else::

    import gymnasium as gym
    import rl_env

    env = gym.make("ddso/CustomerJourney-v0")                      # one journey
    obs, info = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(0)         # 0 = no contact
    envs = gym.make_vec("ddso/CustomerJourney-v0", num_envs=10_000,
                        vectorization_mode="vector_entry_point")  # numpy over journeys

Keyword arguments of ``gym.make`` override fields of :class:`rl_env.config.JourneyConfig`
(``horizon_days``, ``pool_size``, ``reward=RewardConfig(...)``, ``masked_action``...).

Modules
    :mod:`~rl_env.config` every number: response model, contact caps, reward weights.
    :mod:`~rl_env.customers` the customer pool (the generator's ``draw_population``, or
    warehouse tables), programs and their eligibility (``ddso.policy.eligibility.RULES``).
    :mod:`~rl_env.dynamics` pure functions of (config, pool, state arrays, actions, uniforms).
    :mod:`~rl_env.observation` the observation columns and how they are filled.
    :mod:`~rl_env.journey` the single Env; :mod:`~rl_env.vector` the VectorEnv.
    :mod:`~rl_env.policies` business as usual (the legacy campaign), random, no contact,
        greedy on an XGBoost propensity, LinUCB: one ``policy(obs, mask, rng)`` interface.
    :mod:`~rl_env.cohort` funnel rates of a cohort, used for calibration.
    :mod:`~rl_env.calibrate` maximum-likelihood fit of the response model to logged offers
        (``ddso rl calibrate``).
    :mod:`~rl_env.evaluate` every policy on the same customers and seeds, with 95% intervals
        and uplift against business as usual (``ddso rl evaluate``).
    :mod:`~rl_env.export` the trained PPO policy as a numpy forward pass with the mask applied
        (trained by ``pipelines.train_policy``, RLlib PPO on the new API stack).

Observation
    56 float32 columns (:data:`rl_env.observation.OBS_NAMES`): the ten served financial
    features and eight served contact/complaint features under their
    ``ddso.features.sets.CUSTOMER_FEATURES`` names, the assessment band, age, preferred
    channel and consent, and journey state (stage one-hot, day, weekday, days since the last
    contact and contacts this week per channel, the enrolled program's months, payment,
    payments made and late payments). Latent drivers are never observed.

Actions
    ``Discrete(1 + 4 x (P + 1))``: no contact, or (channel in email/sms/call/app_push) x
    (no offer, or one of the P catalogue programs). The mask (``info["action_mask"]``,
    ``env.action_masks()``) allows a contact only with consent, under the weekly caps per
    channel and in total, with an offer the customer is eligible for, and only before
    enrollment. A masked action raises ValueError (``masked_action="noop"`` makes it a
    no-contact step instead; ``check_env`` runs that way, as it steps unmasked samples).

Dynamics (:mod:`rl_env.dynamics`)
    A day before enrollment, a program month after. A contact qualifies the lead and an
    offer is accepted with logistic probabilities in latent interest, offer fit (the ideal
    program kind), preferred channel, health, fatigue from recent contacts, weekend timing
    and price sensitivity x monthly payment; the generator's coefficients, intercepts
    re-tuned. Contacts under fatigue provoke complaints (which withdraw that channel's
    consent); existing customers churn at the generator's rate, higher after complaints;
    enrolled customers pay monthly (late more often when financially weak) and graduate with
    probability sigmoid(intercept + health + fit + interest), through a constant monthly
    dropout hazard.

Reward
    conversion value + graduation bonus (+ optional value per payment) - contact cost per
    channel - complaint and churn penalties (:class:`rl_env.config.RewardConfig`).

Episode end
    Terminated on churn, graduation or dropout; truncated after ``horizon_days`` (180) days
    without enrollment.

Calibration
    Business as usual (:class:`rl_env.policies.BusinessAsUsual`: about two offers per lead
    over the window via the preferred consented channel, half of them of the advised kind)
    over the default configuration gives the DDSO seed's "before": conversion 0.9% and
    graduation 0.69% of leads (``tests/rl_env/test_calibration.py``; ``ddso bench rl_env
    calibration_customers=200000`` reports both with 99% intervals).

Version history
    v0: first version.
"""

from __future__ import annotations

import gymnasium

ENV_ID = "ddso/CustomerJourney-v0"

if ENV_ID not in gymnasium.registry:
    gymnasium.register(id=ENV_ID, entry_point="rl_env.journey:CustomerJourneyEnv",
                       vector_entry_point="rl_env.vector:CustomerJourneyVectorEnv")
