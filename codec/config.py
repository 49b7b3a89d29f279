"""A base for the typed configs stored as JSON beside weights."""

import dataclasses


class JsonConfig:
    """``to_dict``/``from_dict`` for a config dataclass; unknown keys are refused by name."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict):
        """Raises ValueError naming any key the config does not have."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys: {', '.join(unknown)}")
        return cls(**values)
