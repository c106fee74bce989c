"""The AvatarKit schema for the ``protobuf`` package, built from descriptors at
run time: the reference parser and encoder that tests and benchmarks compare
the wire codec against.  ``protobuf`` is imported only when a schema is
first asked for; the runtime never needs it.

``schema()`` gives the message classes as the server declares them (Flame
fields packed, as proto3 defaults); ``schema(packed=False)`` the same schema
with ``[packed = false]`` on the Flame fields, whose encoder writes every
float as its own fixed32 field (parsers accept either form).
"""

from __future__ import annotations

import functools
from types import SimpleNamespace
from typing import Any

import numpy as np

from .._schema import FLAME_LAYOUT

__all__ = ["schema", "decode_frames", "frames_of", "build_animation", "FLAME_FIELDS"]

#: Flame fields in wire order: (name, field number, floats).
FLAME_FIELDS = tuple((name, i + 1, size) for i, (name, size) in enumerate(FLAME_LAYOUT))


def _file_proto(packed: bool):
    from google.protobuf import descriptor_pb2

    F = descriptor_pb2.FieldDescriptorProto
    fd = descriptor_pb2.FileDescriptorProto(
        name=f"avatarkit_ref_{'packed' if packed else 'unpacked'}.proto",
        package="message",
        syntax="proto3",
    )

    def message(name: str, *specs: tuple, oneof: str | None = None, parent=None):
        msg = (parent.nested_type if parent is not None else fd.message_type).add(name=name)
        if oneof:
            msg.oneof_decl.add(name=oneof)
        for spec in specs:
            fname, number, ftype = spec[:3]
            extra = spec[3] if len(spec) > 3 else {}
            f = msg.field.add(name=fname, number=number, type=ftype)
            f.label = F.LABEL_REPEATED if extra.get("repeated") else F.LABEL_OPTIONAL
            if "type_name" in extra:
                f.type_name = extra["type_name"]
            if extra.get("oneof"):
                f.oneof_index = 0
            if extra.get("unpacked"):
                f.options.packed = False
        return msg

    def map_entry(parent, name: str):
        entry = message(
            name, ("key", 1, F.TYPE_STRING), ("value", 2, F.TYPE_STRING), parent=parent
        )
        entry.options.map_entry = True

    def enum(name: str, *values: tuple[str, int]):
        e = fd.enum_type.add(name=name)
        for vname, number in values:
            e.value.add(name=vname, number=number)

    S, I32, U32, B, BY, FL, E, M = (
        F.TYPE_STRING, F.TYPE_INT32, F.TYPE_UINT32, F.TYPE_BOOL, F.TYPE_BYTES,
        F.TYPE_FLOAT, F.TYPE_ENUM, F.TYPE_MESSAGE,
    )  # fmt: skip
    enum(
        "MessageType",
        ("MESSAGE_UNSPECIFIED", 0),
        ("MESSAGE_CLIENT_CONFIGURE_SESSION", 1),
        ("MESSAGE_SERVER_CONFIRM_SESSION", 2),
        ("MESSAGE_CLIENT_AUDIO_INPUT", 3),
        ("MESSAGE_SERVER_ERROR", 4),
        ("MESSAGE_SERVER_RESPONSE_ANIMATION", 5),
        ("MESSAGE_CLIENT_INTERRUPT", 7),
    )
    enum("AudioFormat", ("AUDIO_FORMAT_PCM_S16LE", 0), ("AUDIO_FORMAT_OGG_OPUS", 1))
    enum("TransportCompression", ("TRANSPORT_COMPRESSION_NONE", 0))
    enum(
        "EgressType",
        ("EGRESS_TYPE_UNSPECIFIED", 0),
        ("EGRESS_TYPE_LIVEKIT", 1),
        ("EGRESS_TYPE_AGORA", 2),
    )
    lk = message(
        "LiveKitEgressConfig",
        ("url", 1, S), ("api_key", 2, S), ("api_secret", 3, S), ("room_name", 4, S),
        ("publisher_id", 5, S),
        ("extra_attributes", 6, M,
         {"repeated": True, "type_name": ".message.LiveKitEgressConfig.ExtraAttributesEntry"}),
        ("idle_timeout", 7, I32), ("api_token", 8, S),
    )  # fmt: skip
    map_entry(lk, "ExtraAttributesEntry")
    message(
        "AgoraEgressConfig",
        ("channel_name", 1, S), ("token", 2, S), ("uid", 3, U32), ("publisher_id", 4, S),
    )  # fmt: skip
    ccs = message(
        "ClientConfigureSession",
        ("sample_rate", 1, I32), ("bitrate", 2, I32),
        ("audio_format", 3, E, {"type_name": ".message.AudioFormat"}),
        ("transport_compression", 4, E, {"type_name": ".message.TransportCompression"}),
        ("egress_type", 5, E, {"type_name": ".message.EgressType"}),
        ("livekit_egress", 6, M, {"type_name": ".message.LiveKitEgressConfig"}),
        ("agora_egress", 7, M, {"type_name": ".message.AgoraEgressConfig"}),
        ("extra_params", 8, M,
         {"repeated": True, "type_name": ".message.ClientConfigureSession.ExtraParamsEntry"}),
    )  # fmt: skip
    map_entry(ccs, "ExtraParamsEntry")
    message("ServerConfirmSession", ("connection_id", 1, S))
    message("TraceContext", ("traceparent", 1, S), ("tracestate", 2, S))
    message(
        "ClientAudioInput",
        ("req_id", 1, S), ("end", 2, B), ("audio", 3, BY),
        ("trace_context", 4, M, {"type_name": ".message.TraceContext"}),
    )  # fmt: skip
    message(
        "ServerError",
        ("connection_id", 1, S), ("req_id", 2, S), ("code", 3, I32), ("message", 4, S),
    )  # fmt: skip
    message(
        "Flame",
        *[(name, number, FL, {"repeated": True, "unpacked": not packed})
          for name, number, _ in FLAME_FIELDS],
    )  # fmt: skip
    message("FlameAnimation", ("keyframes", 1, M, {"repeated": True, "type_name": ".message.Flame"}))
    message(
        "ServerResponseAnimation",
        ("connection_id", 1, S), ("req_id", 2, S), ("end", 3, B),
        ("animation", 4, M, {"type_name": ".message.FlameAnimation"}),
        ("avatar_id", 5, S),
    )  # fmt: skip
    message("ClientInterrupt", ("req_id", 1, S))
    message(
        "Message",
        ("type", 1, E, {"type_name": ".message.MessageType"}),
        ("client_configure_session", 2, M,
         {"type_name": ".message.ClientConfigureSession", "oneof": True}),
        ("server_confirm_session", 3, M,
         {"type_name": ".message.ServerConfirmSession", "oneof": True}),
        ("client_audio_input", 4, M, {"type_name": ".message.ClientAudioInput", "oneof": True}),
        ("server_error", 5, M, {"type_name": ".message.ServerError", "oneof": True}),
        ("server_response_animation", 6, M,
         {"type_name": ".message.ServerResponseAnimation", "oneof": True}),
        ("client_interrupt", 8, M, {"type_name": ".message.ClientInterrupt", "oneof": True}),
        oneof="data",
    )  # fmt: skip
    return fd


@functools.lru_cache(maxsize=None)
def schema(packed: bool = True) -> Any:
    """A namespace of protobuf message classes (``Message``, ``Flame``, ...)
    in a private descriptor pool."""
    from google.protobuf import descriptor_pool, message_factory

    pool = descriptor_pool.DescriptorPool()
    file_desc = pool.Add(_file_proto(packed))
    del file_desc
    ns = SimpleNamespace()
    for name in (
        "Message", "ServerResponseAnimation", "FlameAnimation", "Flame", "ServerError",
        "ServerConfirmSession", "ClientAudioInput", "TraceContext", "ClientConfigureSession",
        "LiveKitEgressConfig", "AgoraEgressConfig", "ClientInterrupt",
    ):  # fmt: skip
        desc = pool.FindMessageTypeByName(f"message.{name}")
        setattr(ns, name, message_factory.GetMessageClass(desc))
    return ns


def decode_frames(data: bytes) -> tuple[Any, np.ndarray]:
    """Parses an envelope with ``protobuf`` and converts the keyframes to a
    float32 (n, 120) array, as a Python developer would write it."""
    env = schema().Message()
    env.ParseFromString(data)
    keyframes = env.server_response_animation.animation.keyframes
    rows = [
        [*k.translation, *k.rotation, *k.neck_pose, *k.jaw_pose, *k.eye_pose, *k.eye_lid,
         *k.expression]
        for k in keyframes
    ]  # fmt: skip
    frames = np.array(rows, dtype=np.float32).reshape(len(rows), 120)
    return env, frames


def frames_of(env: Any) -> np.ndarray:
    """The keyframes of a parsed protobuf ``Message`` as float32 (n, 120),
    absent Flame fields as zeros (a field of any other length raises)."""
    keyframes = env.server_response_animation.animation.keyframes
    frames = np.zeros((len(keyframes), 120), dtype=np.float32)
    for i, k in enumerate(keyframes):
        start = 0
        for name, _, size in FLAME_FIELDS:
            values = getattr(k, name)
            if len(values):
                if len(values) != size:
                    raise ValueError(f"Flame.{name} holds {len(values)} floats, not {size}")
                frames[i, start : start + size] = values
            start += size
    return frames


def build_animation(
    frames: np.ndarray,
    *,
    req_id: str = "",
    connection_id: str = "",
    end: bool = False,
    avatar_id: str = "",
    packed: bool = True,
) -> Any:
    """A protobuf ``Message`` holding ``frames`` (float32 (n, 120))."""
    ns = schema(packed)
    env = ns.Message(type=5)
    sra = env.server_response_animation
    sra.connection_id = connection_id
    sra.req_id = req_id
    sra.end = end
    sra.avatar_id = avatar_id
    sra.animation.SetInParent()
    frames = np.asarray(frames, dtype=np.float32)
    for row in frames:
        kf = sra.animation.keyframes.add()
        start = 0
        for name, _, size in FLAME_FIELDS:
            getattr(kf, name).extend(row[start : start + size].tolist())
            start += size
    return env
