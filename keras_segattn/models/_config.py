"""Config plumbing shared by the model classes that need their own type."""

from __future__ import annotations

import keras


class ConstructorConfigMixin:
    """`get_config` holds the constructor arguments; `from_config` calls the
    constructor with them (keras-hub's Backbone convention, STYLE.md §4).

    Subclasses list their arguments in `_constructor_config()`.
    """

    def _constructor_config(self) -> dict:
        raise NotImplementedError

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dtype": keras.dtype_policies.serialize(self.dtype_policy),
            **self._constructor_config(),
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("dtype"), dict):
            config["dtype"] = keras.dtype_policies.deserialize(config["dtype"])
        return cls(**config)
