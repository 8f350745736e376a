"""A zone's manual subnet rules for one address family, as prefix queries on integers.

The region table asks which rule decides an address or a piece of the address space (the most
specific one holding it), and so does the locator when it explains an answer. Rules are few
(dozens), so a dict per prefix length answers that without a trie.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network


@dataclass(frozen=True, slots=True)
class SubnetRule:
    network: int  # first address, as an integer
    prefix: int
    region: str
    rule: str  # "subnet 198.18.0.0/15", as the zone wrote it


class SubnetTable:
    """The subnet rules of one family (``bits`` 32 or 128); immutable once built."""

    __slots__ = ("_by_prefix", "_lengths", "_rules", "bits")

    def __init__(self, rules: Iterable[tuple[IPv4Network | IPv6Network, str, str]], bits: int) -> None:
        """``rules``: (network, region, description); a later duplicate network replaces one before."""
        self.bits = bits
        by_prefix: dict[tuple[int, int], SubnetRule] = {}
        for network, region, description in rules:
            rule = SubnetRule(int(network.network_address), network.prefixlen, region, description)
            by_prefix[(rule.prefix, rule.network >> (bits - rule.prefix))] = rule
        self._by_prefix = by_prefix
        self._lengths = tuple(sorted({prefix for prefix, _ in by_prefix}, reverse=True))
        self._rules = tuple(sorted(by_prefix.values(), key=lambda rule: (rule.network, rule.prefix)))

    def __bool__(self) -> bool:
        return bool(self._rules)

    @property
    def rules(self) -> tuple[SubnetRule, ...]:
        """Every rule, by network then prefix length."""
        return self._rules

    def covering(self, network: int, prefix: int) -> SubnetRule | None:
        """The most specific rule that holds all of ``network``/``prefix``, if any.

        With ``prefix`` == bits this is the rule that decides a single address.
        """
        bits = self.bits
        for length in self._lengths:  # longest first
            if length <= prefix:
                rule = self._by_prefix.get((length, network >> (bits - length)))
                if rule is not None:
                    return rule
        return None
