"""The C++ side of files and conversions: opendl's container reader refuses what no writer produces (strings
that are not UTF-8, object shapes that overflow), and Python strings without a UTF-8 form are refused with
the code of the parameter holding them, not a pybind11 cast error."""

import os
import struct
import zlib

import pytest

import opendl as ha


def container(payload: bytes) -> bytes:
    """A container of format version 1 around a payload (the layout of cpp/src/io/container.cpp: magic, version,
    flags, payload size, payload CRC, header CRC), so that only the payload is damaged, not the checksums."""
    head = b"OPENDLC\0" + struct.pack("<IIQI", 1, 0, len(payload), zlib.crc32(payload))
    return head + struct.pack("<I", zlib.crc32(head)) + payload


def one_key(key: bytes, value: bytes) -> bytes:
    return b"D" + struct.pack("<Q", 1) + b"s" + struct.pack("<Q", len(key)) + key + value


def empty_tuple() -> bytes:
    return b"T" + struct.pack("<Q", 0)


def test_the_payload_builder_matches_the_writer(tmp_path):
    # the hand-built container of a valid payload reads back: the cases below fail for their payload alone
    path = tmp_path / "ok.hdict"
    path.write_bytes(container(one_key(b"a", empty_tuple())))
    assert ha.get_dict_param(ha.read_dict(str(path), [], []), "keys", []) == ["a"]


@pytest.mark.parametrize("payload, words", [
    (one_key(b"\xff", empty_tuple()), "not UTF-8"),  # was a raw UnicodeDecodeError
    (one_key(b"a", b"T" + struct.pack("<Q", 1) + b"s" + struct.pack("<Q", 1) + b"\xc3"), "not UTF-8"),
    (one_key(b"a", b"T" + struct.pack("<Q", 1) + b"s" + struct.pack("<Q", 3) + b"\xed\xa0\x80"), "not UTF-8"),
    # a zero size next to sizes whose product overflows: numpy raised a raw ValueError
    (one_key(b"o", b"O" + bytes([1, 4]) + struct.pack("<4q", 0, 2 ** 62, 2 ** 62, 2 ** 62)), "overflows"),
])
def test_damaged_container_content_is_refused(tmp_path, payload, words):
    path = tmp_path / "bad.hdict"
    path.write_bytes(container(payload))
    with pytest.raises(ha.HOperatorError) as e:
        ha.read_dict(str(path), [], [])
    assert e.value.error_code == 5238 and words in str(e.value), str(e.value)


def test_strings_without_utf8_form_are_refused_by_the_parameter_holding_them(tmp_path):
    # '\udce9' is what os.listdir gives for the byte 0xE9 of a Latin-1 file name; it has no UTF-8 form. The Python
    # operators check dict content themselves; the C++ conversions are the backstop for every other path.
    from opendl import _core
    bad = "caf\udce9.png"
    for tree, words in (({"file_name": [bad]}, "the string"), ({bad: [1]}, "the dict key")):
        with pytest.raises(ha.HOperatorError) as e:  # the dict is parameter 1 of the operators writing it
            _core.dict_write_file(str(tmp_path / "d.hdict"), tree)
        assert e.value.error_code == 1301 and words in str(e.value) and "surrogate" in str(e.value)
    with pytest.raises(ha.HOperatorError) as e:
        _core.dict_write_file(str(tmp_path / "d.hdict"), {2 ** 70: [1]})
    assert e.value.error_code == 1301 and "64 bits" in str(e.value)
    assert os.listdir(tmp_path) == []
    m = ha.read_dl_model("pretrained_dl_classifier_compact.hdl")
    names = ha.get_dl_model_param(m, "class_names")
    with pytest.raises(ha.HOperatorError) as e:  # set_dl_model_param's value is parameter 3
        ha.set_dl_model_param(m, "class_names", [bad] + names[1:])
    assert e.value.error_code == 1303
    assert ha.get_dl_model_param(m, "class_names") == names
