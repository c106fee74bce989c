"""Audio in as numbers: what a producer hands in becomes s16le PCM
(:func:`as_pcm16`), and the playout volume (:func:`apply_volume_into`).

The compiled ``_pcm_c`` is used when it was built (and
``AVATARKIT_NO_EXTENSIONS`` is unset); ``_pcm_py`` is its pure-Python twin
and holds the full description of what is accepted and how it is rounded.
"""

from .._compat import NO_EXTENSIONS

if NO_EXTENSIONS:  # pragma: no cover - exercised by the no-extensions CI run
    from ._pcm_py import GAIN_ONE, AudioInputStats, Pcm16Input, apply_volume_into, as_pcm16, volume_gain
else:
    try:
        from ._pcm_c import GAIN_ONE, AudioInputStats, Pcm16Input, apply_volume_into, as_pcm16, volume_gain
    except ImportError:  # pragma: no cover - source tree without a build
        from ._pcm_py import GAIN_ONE, AudioInputStats, Pcm16Input, apply_volume_into, as_pcm16, volume_gain

__all__ = ["GAIN_ONE", "AudioInputStats", "Pcm16Input", "apply_volume_into", "as_pcm16", "volume_gain"]
