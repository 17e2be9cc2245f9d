"""Build args: the ARGs a Dockerfile declares, with the values `--build-arg` gives them (moby's buildargs.go)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

# Build args that are passed on to RUN without being declared, and kept out of the history
# unless declared (moby's builtinAllowedBuildArgs).
BUILTIN_ARGS = frozenset({
    "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY", "ftp_proxy",
    "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy",
})  # fmt: skip


class BuildArgs:
    """The ARGs of a build: declared ones, those before the first FROM (meta), and `--build-arg` values.

    A declared ARG takes its value from `--build-arg`, else its default, else (declared without
    one) the meta ARG of that name (moby's BuildArgs).
    """

    def __init__(self, options: Mapping[str, str | None]) -> None:
        self.options = dict(options)
        self.allowed: dict[str, str | None] = {}
        self.meta: dict[str, str | None] = {}
        self.referenced: set[str] = set()

    def for_stage(self) -> BuildArgs:
        """Return the args a new stage starts with: the meta args, nothing declared yet."""
        stage = BuildArgs(self.options)
        stage.meta = dict(self.meta)
        stage.referenced = set(self.referenced)
        return stage

    def declare(self, key: str, value: str | None) -> None:
        """Declare `ARG key[=value]` in this scope."""
        self.allowed[key] = value
        self.referenced.add(key)

    def values(self) -> dict[str, str]:
        """Return the values of the declared args (and of built-in args given as options)."""
        return self._values(self.allowed)

    def meta_values(self) -> dict[str, str]:
        """Return the values of the meta args, as FROM sees them."""
        return self._values(self.meta)

    def _values(self, mapping: Mapping[str, str | None]) -> dict[str, str]:
        result = {}
        for key in [*mapping, *sorted(BUILTIN_ARGS - mapping.keys())]:
            if (value := self._value(key, mapping)) is not None:
                result[key] = value
        return result

    def _value(self, key: str, mapping: Mapping[str, str | None]) -> str | None:
        if self.options.get(key) is not None:
            return self.options[key]
        if mapping.get(key) is None:
            return self.meta.get(key)
        return mapping[key]

    def not_in_env(self, env: Sequence[str]) -> list[str]:
        """Return `k=v` for the declared args that the ENV list does not set (moby's FilterAllowed)."""
        keys = {item.split("=", 1)[0] for item in env}
        return [f"{k}={v}" for k, v in sorted(self.values().items()) if k not in keys]

    def in_history(self, key: str) -> bool:
        """Return whether an arg shows in a RUN's history: declared, or not a built-in one."""
        return key in self.allowed or key not in BUILTIN_ARGS

    def unused(self) -> list[str]:
        """Return the `--build-arg`s no ARG declared, built-in ones aside, sorted."""
        return sorted(k for k in self.options if k not in self.referenced and k not in BUILTIN_ARGS)
