"""Hook specifications: how plugins add losses, samplers and energies to skebm.

A plugin is a module (or object) with functions marked by :data:`hookimpl`, exposed
through an entry point in the group ``skebm``::

    # pyproject.toml of the plugin distribution
    [project.entry-points.skebm]
    my_sampler = "skebm_my_sampler.plugin"

    # skebm_my_sampler/plugin.py
    import skebm

    @skebm.hookimpl
    def skebm_register_samplers(register):
        register("my-sampler", MySampler)

Every hook receives a ``register(name, component)`` callback and is called once,
lazily, when the registry is first needed. An implementation may accept fewer
arguments than the specification lists, so new arguments can be added later without
breaking plugins. skebm's own components are registered through these same hooks.

The README's "Writing a plugin" walks through a whole plugin package, and
:func:`skebm.utils.estimator_checks.check_sampler` /
:func:`~skebm.utils.estimator_checks.check_loss` (or
:func:`~skebm.utils.estimator_checks.parametrize_with_plugin_checks` in pytest)
verify that a strategy keeps skebm's contract.
"""

import pluggy

__all__ = [
    "hookimpl",
    "hookspec",
    "skebm_register_energies",
    "skebm_register_losses",
    "skebm_register_samplers",
]

PROJECT_NAME = "skebm"

#: Marker for hook specifications (used by skebm itself).
hookspec = pluggy.HookspecMarker(PROJECT_NAME)

#: Marker for hook implementations: decorate a plugin's hook functions with it.
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec
def skebm_register_losses(register):
    """Register training losses.

    :param register: call ``register(name, cls)`` once per loss, where ``cls`` is a
        subclass of :class:`skebm.losses.BaseLoss`. ``name`` is what users pass as
        ``EnergyDensityEstimator(loss=name)``; it must not contain ``":"``.
    """


@hookspec
def skebm_register_samplers(register):
    """Register MCMC samplers.

    :param register: call ``register(name, cls)`` once per sampler, where ``cls``
        is a subclass of :class:`skebm.samplers.BaseSampler`.
    """


@hookspec
def skebm_register_energies(register):
    """Register energy networks.

    :param register: call ``register(name, factory)`` once per energy, where
        ``factory(n_features, **energy_params)`` returns a ``torch.nn.Module``
        mapping a ``(batch, n_features)`` tensor to a ``(batch,)`` tensor. An
        ``nn.Module`` subclass whose first argument is ``n_features`` qualifies.
    """
