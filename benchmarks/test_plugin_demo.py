"""The pytest plugin on the demo shop, as a user would write it (docs/testing.md): what
wide_logging costs the shop's requests. CI runs it in quick mode (--benchmark-disable:
each request once through each app); run it timed with

    .venv/bin/python -m pytest benchmarks/test_plugin_demo.py -p no:cacheprovider
"""

from __future__ import annotations

from typing import Any

from wide_logging.tools.demo_shop import build_app

REQUESTS = ["/products/7", "/search?q=red", "/orders/8", ("POST", "/checkout", {}, b'{"items": 2}')]


def test_wide_logging_costs_the_demo_shop_little(wide_logging_overhead: Any) -> None:
    result = wide_logging_overhead.measure(build_app(instrumented=False), REQUESTS)
    result.assert_within(us=300)
