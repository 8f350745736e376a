"""Reading and validating configuration: zone YAML and the server settings file."""

from gslb.config.problems import ConfigError, Problem, Problems

__all__ = ["ConfigError", "Problem", "Problems"]
