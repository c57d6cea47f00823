"""Configuration management: layers, versions with history and rollback, live rollout.

A service's configuration is its manifest ``env:``, an environment overlay's merged over
it, runtime changes (``corral config set``) on top, and its secrets (references in the
manifest, values read by the control plane, fingerprints everywhere else). Every change
is a version in a store under ``.corral/config/`` (:class:`ConfigStore`), rolled out to
running services by :class:`ConfigControl`: in place where the service marks the fields
reloadable, by a rolling restart otherwise, undone when the service refuses it
(:class:`Rollout`).
"""

from corral.config._addon import ConfigAddon
from corral.config._control import ConfigControl, ConfigOutcome, Outcome, other_changes
from corral.config._errors import (
    ConfigError,
    ConfigRejectedError,
    InvalidChangeError,
    SecretUnavailableError,
    UndeclaredSettingError,
    UnknownVersionError,
    VersionConflictError,
)
from corral.config._layers import manifest_layers
from corral.config._model import (
    Change,
    ConfigVersion,
    Override,
    Secret,
    ServiceConfig,
    changed_services,
    check_declared,
    declared,
    diff,
    rebase,
    set_values,
    unset_values,
)
from corral.config._rollout import Report, Rollout, RolloutKind, Services
from corral.config._secrets import Fingerprints, current_user, read_secret, resolve_secrets
from corral.config._store import ConfigStore
from corral.config._views import (
    HISTORY,
    ConfigDiff,
    ConfigHistoryEntry,
    ConfigInstance,
    ConfigShown,
    ConfigValue,
    diff_view,
    history_view,
    instances_view,
    version_view,
)

CONFIG_DIRNAME = "config"
"""``<state_dir>/config``: the version files and the fingerprint key."""

__all__ = [
    "CONFIG_DIRNAME",
    "HISTORY",
    "Change",
    "ConfigAddon",
    "ConfigControl",
    "ConfigDiff",
    "ConfigError",
    "ConfigHistoryEntry",
    "ConfigInstance",
    "ConfigOutcome",
    "ConfigRejectedError",
    "ConfigShown",
    "ConfigStore",
    "ConfigValue",
    "ConfigVersion",
    "Fingerprints",
    "InvalidChangeError",
    "Outcome",
    "Override",
    "Report",
    "Rollout",
    "RolloutKind",
    "Secret",
    "SecretUnavailableError",
    "ServiceConfig",
    "Services",
    "UndeclaredSettingError",
    "UnknownVersionError",
    "VersionConflictError",
    "changed_services",
    "check_declared",
    "current_user",
    "declared",
    "diff",
    "diff_view",
    "history_view",
    "instances_view",
    "manifest_layers",
    "other_changes",
    "read_secret",
    "rebase",
    "resolve_secrets",
    "set_values",
    "unset_values",
    "version_view",
]
