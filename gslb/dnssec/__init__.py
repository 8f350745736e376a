"""DNSSEC online signing: key files (keys.py), the per-zone signer (signer.py), the zone YAML's
`dnssec:` section (config.py) and the `gslb dnssec` commands (commands.py)."""
