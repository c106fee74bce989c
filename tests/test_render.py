"""The face renderer (``avatarkit_fast.render``): what the picture shows for
each FLAME group, what ``render_into`` refuses, the sizes it draws, that it
allocates nothing per frame, and that its two rasterizer twins paint the
same bytes."""

from __future__ import annotations

import gc
import tracemalloc

import numpy as np
import pytest

from avatarkit_fast._compat import NO_EXTENSIONS
from avatarkit_fast._schema import FLAME_OFFSETS
from avatarkit_fast.render import FaceRenderer, Renderer, face_module
from avatarkit_fast.render.face import BACKGROUND

TAGS = ["py"] if NO_EXTENSIONS else ["c", "py"]
JAW = FLAME_OFFSETS["jaw_pose"]
LID = FLAME_OFFSETS["eye_lid"]
ROT = FLAME_OFFSETS["rotation"]
NECK = FLAME_OFFSETS["neck_pose"]
EYE = FLAME_OFFSETS["eye_pose"]
TRANS = FLAME_OFFSETS["translation"]
EXPR = FLAME_OFFSETS["expression"]


@pytest.fixture(params=TAGS, scope="module")
def tag(request) -> str:
    return request.param


def rest() -> np.ndarray:
    return np.zeros(120, np.float32)


def draw(tag: str, k: np.ndarray, w: int = 128, h: int | None = None) -> np.ndarray:
    return FaceRenderer(w, h, impl=tag).render(k)


def dark(img: np.ndarray, box) -> int:
    """Pixels darker than the skin, lips and whites in box (x0, y0, x1, y1)."""
    x0, y0, x1, y1 = box
    grey = img[y0:y1, x0:x1].astype(np.int32).sum(axis=2) / 3
    return int((grey < 90).sum())


def white(img: np.ndarray, box) -> int:
    x0, y0, x1, y1 = box
    return int((img[y0:y1, x0:x1] > 245).all(axis=2).sum())


def face_box(img: np.ndarray):
    """(x0, y0, x1, y1) of every pixel that is not the background."""
    ys, xs = np.nonzero((img != np.array(BACKGROUND, np.uint8)).any(axis=2))
    return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


MOUTH = (32, 78, 96, 122)  # at 128 x 128
EYES = (20, 40, 108, 68)


@pytest.mark.skipif(NO_EXTENSIONS, reason="the pure twins are selected")
def test_the_compiled_rasterizer_is_the_default():
    assert face_module().__name__ == "avatarkit_fast.render._face_c"
    assert FaceRenderer(64).impl == "c"


def test_a_face_renderer_is_a_renderer(tag):
    r = FaceRenderer(96, 64, impl=tag)
    assert isinstance(r, Renderer)
    assert (r.width, r.height, r.impl) == (96, 64, tag)


def test_the_jaw_opens_the_mouth(tag):
    talk = rest()
    talk[JAW] = 0.15
    shut, opened = draw(tag, rest()), draw(tag, talk)
    assert dark(opened, MOUTH) > dark(shut, MOUTH) + 50
    # Further open is darker still (more of the mouth's inside shows), and the
    # chin drops: the face reaches lower.
    wide = rest()
    wide[JAW] = 0.4
    assert dark(draw(tag, wide), MOUTH) > dark(opened, MOUTH)
    assert face_box(draw(tag, wide))[3] > face_box(shut)[3]
    # Above the chin (the head's centre row is 60) nothing changes.
    assert np.array_equal(opened[:60], shut[:60])


def test_the_lids_close_each_eye(tag):
    both = rest()
    both[LID:LID + 2] = 1.0
    assert white(draw(tag, both), EYES) < white(draw(tag, rest()), EYES) // 3
    left = rest()
    left[LID] = 1.0
    img, ref = draw(tag, left), draw(tag, rest())
    # eye_lid[0] closes the eye on the picture's left only.
    assert white(img, (20, 40, 64, 68)) < white(ref, (20, 40, 64, 68)) // 3
    assert white(img, (64, 40, 108, 68)) == white(ref, (64, 40, 108, 68))


def test_the_head_turns_tilts_and_moves(tag):
    ref = draw(tag, rest())
    yaw = rest()
    yaw[ROT + 1] = 0.4
    turned = draw(tag, yaw)

    def pupils_x(img):
        ys, xs = np.nonzero((img[EYES[1]:EYES[3]].astype(int).sum(axis=2) < 120))
        return xs.mean()

    assert pupils_x(turned) > pupils_x(ref) + 5  # yaw to the picture's right
    neck = rest()
    neck[NECK + 1] = 0.4  # the neck turns the head as the rotation does
    assert np.array_equal(draw(tag, neck), turned)
    roll = rest()
    roll[ROT + 2] = 0.3
    tilted = draw(tag, roll)
    # The eyes are no longer level: the dark pupils' rows differ left and right.
    lrow = np.nonzero(tilted[:, :64].astype(int).sum(axis=2) < 120)[0].mean()
    rrow = np.nonzero(tilted[:, 64:].astype(int).sum(axis=2) < 120)[0].mean()
    assert abs(lrow - rrow) > 3
    moved = rest()
    moved[TRANS] = 0.05
    moved[TRANS + 1] = 0.02
    (x0, y0, _, _), (mx0, my0, _, _) = face_box(ref), face_box(draw(tag, moved))
    assert mx0 - x0 == pytest.approx(0.05 * 2 * 128, abs=2)
    assert y0 - my0 == pytest.approx(0.02 * 2 * 128, abs=2)


def test_gaze_smile_and_brows_change_their_regions(tag):
    ref = draw(tag, rest())
    look = rest()
    look[EYE + 1] = look[EYE + 4] = 0.2
    img = draw(tag, look)
    assert not np.array_equal(img[EYES[1]:EYES[3]], ref[EYES[1]:EYES[3]])
    assert np.array_equal(img[EYES[3]:], ref[EYES[3]:])
    smile = rest()
    smile[EXPR + 1] = 2.0
    img = draw(tag, smile)
    assert not np.array_equal(img[78:], ref[78:]) and np.array_equal(img[:60], ref[:60])


def test_the_twins_paint_the_same_bytes():
    if NO_EXTENSIONS:
        pytest.skip("the compiled twin is not in use")
    rng = np.random.default_rng(7)
    for i in range(40):
        k = np.zeros(120, np.float32)
        k[TRANS:TRANS + 3] = rng.standard_normal(3) * 0.02
        k[3:9] = rng.standard_normal(6) * 0.2
        k[JAW] = abs(rng.standard_normal()) * 0.25
        k[EYE:EYE + 6] = rng.standard_normal(6) * 0.2
        k[LID:LID + 2] = rng.uniform(0, 1, 2)
        k[EXPR:] = rng.standard_normal(100)
        if i % 10 == 9:
            k = (rng.standard_normal(120) * 50).astype(np.float32)  # far beyond a face
        w, h = [(128, 128), (200, 90), (33, 61), (256, 256)][i % 4]
        a = FaceRenderer(w, h, impl="c").render(k)
        b = FaceRenderer(w, h, impl="py").render(k)
        assert np.array_equal(a, b), (i, w, h, int(np.abs(a.astype(int) - b).max()))


def test_render_into_replaces_every_pixel(tag):
    r = FaceRenderer(80, 60, impl=tag)
    buf = np.random.default_rng(1).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    r.render_into(rest(), buf)
    assert np.array_equal(buf, r.render(rest()))
    # float64 and integer keyframes draw as their float32 values
    assert np.array_equal(r.render(rest().astype(np.float64)), buf)
    assert np.array_equal(r.render(np.zeros(120, np.int32)), buf)


def test_render_into_refuses_a_wrong_buffer_and_draws_nothing(tag):
    r = FaceRenderer(64, 48, impl=tag)
    k = rest()
    good = np.zeros((48, 64, 3), np.uint8)
    cases = [
        (TypeError, "numpy array", bytearray(48 * 64 * 3)),
        (TypeError, "uint8", np.zeros((48, 64, 3), np.float32)),
        (TypeError, "uint8", np.zeros((48, 64, 3), np.int16)),
        (ValueError, r"\(48, 64, 3\)", np.zeros((64, 48, 3), np.uint8)),
        (ValueError, r"\(48, 64, 3\)", np.zeros((48, 64, 4), np.uint8)),
        (ValueError, r"\(48, 64, 3\)", np.zeros((48 * 64 * 3,), np.uint8)),
        (ValueError, "C-contiguous", np.zeros((48, 128, 3), np.uint8)[:, ::2]),
        (ValueError, "C-contiguous", np.asfortranarray(np.zeros((48, 64, 3), np.uint8))),
    ]
    for exc, match, buf in cases:
        with pytest.raises(exc, match=match):
            r.render_into(k, buf)
    ro = np.zeros((48, 64, 3), np.uint8)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        r.render_into(k, ro)
    for exc, match, bad in [
        (ValueError, "120 floats", np.zeros(119, np.float32)),
        (ValueError, "120 floats", np.zeros((1, 120), np.float32)),
        (ValueError, "120 floats", np.zeros((2, 120), np.float32)),
        (ValueError, "120 floats", np.float32(0.0)),
        (TypeError, "numbers", np.array(["a"] * 120)),
        (TypeError, "numbers", np.zeros(120, np.complex64)),
        (TypeError, "numbers", [None] * 120),
    ]:
        with pytest.raises(exc, match=match):
            r.render_into(bad, good)
        assert not good.any()  # nothing drawn


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_a_non_finite_keyframe_draws_as_zero(tag, value):
    r = FaceRenderer(96, impl=tag)
    k = np.full(120, value, np.float32)
    assert np.array_equal(r.render(k), r.render(rest()))
    half = rest()
    half[JAW] = 0.2
    mixed = half.copy()
    mixed[::2] = value
    zeroed = half.copy()
    zeroed[::2] = 0.0
    assert np.array_equal(r.render(mixed), r.render(zeroed))


def test_huge_values_are_clipped_not_a_crash(tag):
    r = FaceRenderer(96, impl=tag)
    for v in (3.4e38, -3.4e38, 1e6, -1e6):
        img = r.render(np.full(120, v, np.float32))
        assert img.shape == (96, 96, 3)


@pytest.mark.parametrize("w,h", [(32, 32), (1024, 1024), (320, 180), (180, 320), (16, 1024), (1024, 16)])
def test_sizes_from_small_to_large_and_not_square(tag, w, h):
    img = FaceRenderer(w, h, impl=tag).render(rest())
    assert img.shape == (h, w, 3)
    x0, y0, x1, y1 = face_box(img)
    s = min(w, h)
    # The head is sized by the shorter side and centred.
    assert (x1 - x0) == pytest.approx(0.92 * 0.6 * s, abs=2 + 0.02 * s)
    assert (x0 + x1) / 2 == pytest.approx(w / 2, abs=1.5)
    assert y0 >= 0 and y1 <= h
    assert dark(img, (0, 0, w, h)) > 0  # outline and pupils are drawn at every size


def test_sizes_out_of_range_are_refused():
    for bad in (0, 15, 4097, -3):
        with pytest.raises(ValueError, match="pixels"):
            FaceRenderer(bad)
        with pytest.raises(ValueError, match="pixels"):
            FaceRenderer(64, bad)
    with pytest.raises(TypeError):
        FaceRenderer(64.0)
    with pytest.raises(TypeError):
        FaceRenderer(True)
    with pytest.raises(ValueError):
        FaceRenderer(64, motion_gain=float("nan"))
    with pytest.raises(ValueError):
        FaceRenderer(64, impl="gpu")


def _traced(tag: str, size: int) -> tuple[int, int]:
    """(kept, peak) bytes of traced memory over 30 frames drawn into one
    buffer at size x size, after the same frames once as a warm-up."""
    r = FaceRenderer(size, impl=tag)
    buf = np.empty((size, size, 3), np.uint8)
    frames = np.zeros((30, 120), np.float32)
    frames[:, JAW] = np.linspace(0, 0.3, 30)
    frames[:, LID] = np.linspace(0, 1, 30)
    frames[:, ROT + 1] = np.linspace(-0.2, 0.2, 30)
    for k in frames:
        r.render_into(k, buf)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        for k in frames:
            r.render_into(k, buf)
        gc.collect()
        current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return current - before, peak - before


def test_no_allocation_per_frame(tag):
    """Frames drawn into the caller's buffer keep nothing; compiled, they
    allocate nothing that grows with the picture (a 1024 x 1024 frame is
    3 MB): the peak of traced memory is the geometry's few small tables,
    under 32 kB and the same at 64 and 1024 pixels.  The numpy twin's
    temporaries do grow with the picture; it keeps nothing either."""
    small_kept, small_peak = _traced(tag, 64)
    big_kept, big_peak = _traced(tag, 1024 if tag == "c" else 256)
    assert small_kept < 1024 and big_kept < 1024, (small_kept, big_kept)
    if tag == "c":
        assert big_peak < 32 * 1024, big_peak
        assert abs(big_peak - small_peak) < 1024, (small_peak, big_peak)
