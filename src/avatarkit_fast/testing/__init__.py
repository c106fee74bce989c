"""Support for avatarkit_fast's own tests and benchmarks (reference codecs,
fixtures).  Nothing here is imported by the runtime."""
