"""pytest plugin for runs under valgrind (``-p pytest_memcheck``): no
hypothesis deadlines (everything is 20 to 50 times slower) and fewer examples
where a test does not set its own count."""

import os

try:
    from hypothesis import HealthCheck, settings
except ImportError:  # pragma: no cover
    settings = None

if settings is not None:
    settings.register_profile(
        "memcheck",
        deadline=None,
        max_examples=int(os.environ.get("MEMCHECK_EXAMPLES", "20")),
        suppress_health_check=list(HealthCheck),
    )
    settings.load_profile("memcheck")
