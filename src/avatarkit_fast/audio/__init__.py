"""Audio in and out: input conversion, resampling, Ogg Opus, audio files.

Nothing here knows the controller: each piece is a function or a small
stateful object that a producer (the controller, a session, the relay) or a
consumer (a player, a clock) puts in its path.

* :mod:`.pcm`: arrays and bytes in as s16le PCM, the volume arithmetic.
* :mod:`.resample`: :class:`StreamResampler`, streaming, over ``soxr``.
* :mod:`.ogg` / :mod:`.opus`: :class:`OggOpusDecoder`, Ogg Opus bytes in
  chunks of any size to PCM (PyAV, the ``opus`` extra).
* :mod:`.files`: :func:`read_audio_file` / :func:`write_wav` (``soundfile``).
"""

from .files import AudioFileError, AudioFileInfo, read_audio_file, write_wav
from .opus import OggOpusDecoder
from .pcm import GAIN_ONE, AudioInputStats, Pcm16Input, apply_volume_into, as_pcm16, volume_gain
from .resample import StreamResampler

__all__ = [
    "GAIN_ONE",
    "AudioFileError",
    "AudioFileInfo",
    "AudioInputStats",
    "OggOpusDecoder",
    "Pcm16Input",
    "StreamResampler",
    "apply_volume_into",
    "as_pcm16",
    "read_audio_file",
    "volume_gain",
    "write_wav",
]
