"""Side products: the ``wide-logging`` command and what it runs (demo, simulate, stats)
over stored events. They use the core; the core never imports them."""
