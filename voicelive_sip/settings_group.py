"""SettingsGroup: the base of every settings group; values as the environment or a `.env` file has them."""

from __future__ import annotations

from typing import Any, ClassVar, Literal, get_args, get_origin

from pydantic import AliasChoices, model_validator
from pydantic_settings import BaseSettings

__all__ = ["SettingsGroup", "env_name"]


class SettingsGroup(BaseSettings):
    """A settings group: an empty variable means "not set", as in the reference gateway's `.env.template`.

    `AUTH_PASSWORD=` or `SIP_VIA_ADDR=` leave the default; only fields in `keeps_empty` take "" as a value.
    """

    keeps_empty: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="before")
    @classmethod
    def _from_environment_strings(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        names = _field_names(cls)
        values: dict[str, Any] = {}
        for key, value in data.items():
            name = names.get(key.lower()) if isinstance(key, str) else None
            if isinstance(value, str) and not value.strip() and name not in cls.keeps_empty:
                continue
            if name is not None and isinstance(value, str):
                value = _literal_number(cls.model_fields[name].annotation, value)
            values[key] = value
        return values


def _field_names(model: type[BaseSettings]) -> dict[str, str]:
    """Field name by every key a value may arrive under: the name, its aliases, its environment name."""
    names: dict[str, str] = {}
    for name, field in model.model_fields.items():
        names[name.lower()] = name
        names[env_name(model, name).lower()] = name
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names.update({choice.lower(): name for choice in alias.choices if isinstance(choice, str)})
        elif isinstance(alias, str):
            names[alias.lower()] = name
    return names


def _literal_number(annotation: object, value: str) -> object:
    # A Literal of numbers (SIP_BUSY_STATUS: 486 or 503) compares the string "503" unequal to 503: every
    # environment value is a string, so a number-literal field takes the number the string spells.
    if get_origin(annotation) is Literal and all(isinstance(arg, int) for arg in get_args(annotation)):
        text = value.strip()
        if text.lstrip("+-").isdigit():
            return int(text)
    return value


def env_name(model: type[BaseSettings], key: str) -> str:
    """The environment variable a field (or a key pydantic reported) is read from."""
    if key.isupper():
        return key  # pydantic reports the alias it read (SIP_PORT, AUTH_PASSWORD...)
    field = model.model_fields.get(key)
    alias = field.validation_alias if field is not None else None
    if isinstance(alias, AliasChoices) and isinstance(alias.choices[0], str) and alias.choices[0].isupper():
        return alias.choices[0]
    prefix = str(model.model_config.get("env_prefix", ""))
    return (prefix + key).upper()
