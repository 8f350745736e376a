"""A zone's manual subnet rules for one address family, as prefix queries on integers.

RegionMap asks three questions while it computes a scope: which rule holds this address (the
most specific), which rule holds this whole prefix, and does any rule sit strictly inside this
prefix (then the prefix may mix regions and must be split). Rules are few (dozens), so a dict per
prefix length and a sorted list answer these without a trie.
"""

from __future__ import annotations

import bisect
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

    __slots__ = ("bits", "_lengths", "_by_prefix", "_starts", "_rules")

    def __init__(self, rules: Iterable[tuple[IPv4Network | IPv6Network, str, str]], bits: int) -> None:
        """``rules``: (network, region, description); a later duplicate network replaces one before."""
        self.bits = bits
        by_prefix: dict[tuple[int, int], SubnetRule] = {}
        for network, region, description in rules:
            rule = SubnetRule(int(network.network_address), network.prefixlen, region, description)
            by_prefix[(rule.prefix, rule.network >> (bits - rule.prefix))] = rule
        self._by_prefix = by_prefix
        self._lengths = tuple(sorted({prefix for prefix, _ in by_prefix}, reverse=True))
        ordered = sorted(by_prefix.values(), key=lambda rule: (rule.network, rule.prefix))
        self._starts = [rule.network for rule in ordered]
        self._rules = tuple(ordered)

    def __bool__(self) -> bool:
        return bool(self._rules)

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

    def deepest_inside(self, network: int, prefix: int) -> int:
        """The longest prefix length of a rule strictly inside ``network``/``prefix``; else ``prefix``.

        ``network`` may carry host bits; they are ignored.
        """
        host_bits = self.bits - prefix
        low = (network >> host_bits) << host_bits
        high = low | ((1 << host_bits) - 1)
        deepest = prefix
        starts, rules = self._starts, self._rules
        index = bisect.bisect_left(starts, low)
        while index < len(starts) and starts[index] <= high:
            if rules[index].prefix > deepest:
                deepest = rules[index].prefix
            index += 1
        return deepest

    def has_inside(self, network: int, prefix: int) -> bool:
        """Whether some rule lies strictly inside ``network``/``prefix`` (so it may mix regions)."""
        host_bits = self.bits - prefix
        low = (network >> host_bits) << host_bits
        high = low | ((1 << host_bits) - 1)
        starts, rules = self._starts, self._rules
        index = bisect.bisect_left(starts, low)
        # Rules starting at `low` sort shortest first; any after those is a longer, inner one.
        while index < len(starts) and starts[index] <= high:
            if rules[index].prefix > prefix:
                return True
            index += 1
        return False
